package lambdatenant_test

import (
	"context"
	"io"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/client/lambdatenant"
)

// A function in tenant isolation mode behind API Gateway: the authorizer
// verified the caller's token and set X-Amz-Tenant-Id from its tenant
// claim; the function forwards the token to tokenvendor beside its own
// signature, and reads only its tenant's objects with what comes back.
func ExampleVendor_Credentials() {
	ctx := context.Background()
	// The execution role's credentials, from the environment Lambda sets.
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		panic(err)
	}
	tv, err := lambdatenant.New(lambdatenant.Config{
		URL:     os.Getenv("TOKENVENDOR_URL"),
		Profile: "orders",
		AWSIAM:  client.AWSIAMConfig{Credentials: cfg.Credentials, ServerID: "tokenvendor.prod.example.com", Region: cfg.Region},
	})
	if err != nil {
		panic(err)
	}
	handler := func(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		creds, err := tv.Credentials(ctx, lambdatenant.BearerToken(req.Headers))
		if err != nil {
			return events.APIGatewayProxyResponse{}, err // no tenant id, or a second tenant: fail the invoke
		}
		lc, _ := lambdacontext.FromContext(ctx)
		objects := s3.NewFromConfig(cfg, func(o *s3.Options) { o.Credentials = creds })
		out, err := objects.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String("tenant-data"), Key: aws.String(lc.TenantID + "/profile.json"),
		})
		if err != nil {
			return events.APIGatewayProxyResponse{StatusCode: http.StatusBadGateway}, nil
		}
		defer out.Body.Close()
		body, _ := io.ReadAll(out.Body)
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: string(body)}, nil
	}
	lambda.Start(handler)
}
