package client_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/client"
)

// A service serving many tenants keeps one Client, and builds each
// request's AWS clients from the request's tenant: its S3 and DynamoDB
// calls then reach that tenant's objects and items only.
func ExampleClient_Provider() {
	tv, err := client.New(client.Config{
		URL:     "https://tokenvendor.tokenvendor.svc",
		Profile: "orders",
		// A worker whose token carries the override scope; a projected
		// token is re-read on every request.
		Token: client.TokenFile("/var/run/secrets/tokenvendor/token"),
	})
	if err != nil {
		panic(err)
	}
	handle := func(ctx context.Context, tenantID string) error {
		creds := tv.Provider(tenantID) // one per tenant, shared, refreshed ahead
		objects := s3.New(s3.Options{Region: "us-east-1", Credentials: creds})
		items := dynamodb.New(dynamodb.Options{Region: "us-east-1", Credentials: creds})

		if _, err := objects.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String("tenant-data"), Key: aws.String(tenantID + "/invoices/1.pdf"),
		}); err != nil {
			return err
		}
		_, err := items.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String("Orders"),
			Key: map[string]ddbtypes.AttributeValue{
				"pk": &ddbtypes.AttributeValueMemberS{Value: "TENANT#" + tenantID},
				"sk": &ddbtypes.AttributeValueMemberS{Value: "ORDER#42"},
			},
		})
		return err
	}
	_ = handle
}

// A service acting for its own token's tenant passes "".
func ExampleStaticToken() {
	tv, err := client.New(client.Config{
		URL:        "https://tokenvendor.tokenvendor.svc",
		Token:      client.StaticToken("eyJhbGciOi..."),
		HTTPClient: &http.Client{},
	})
	if err != nil {
		panic(err)
	}
	_ = s3.New(s3.Options{Region: "us-east-1", Credentials: tv.Provider("")})
	fmt.Println("ready")
	// Output: ready
}
