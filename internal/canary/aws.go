package canary

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// retries is the attempts of one read: a throttled read is no verdict, and
// the next run comes soon enough.
const retries = 2

// AWSReader reads S3 objects and DynamoDB items.
type AWSReader struct {
	region                     string
	s3Endpoint, dynamoEndpoint string
}

// NewAWSReader returns a reader for region. An endpoint, when set, replaces
// the service's (MinIO, moto); S3 is then addressed path-style.
func NewAWSReader(region, s3Endpoint, dynamoDBEndpoint string) *AWSReader {
	return &AWSReader{region: region, s3Endpoint: s3Endpoint, dynamoEndpoint: dynamoDBEndpoint}
}

// Read reads the object's metadata, or gets the item, with creds.
func (r *AWSReader) Read(ctx context.Context, creds aws.Credentials, t Target) (Answer, error) {
	provider := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	if t.Table != "" {
		c := dynamodb.New(dynamodb.Options{Region: r.region, Credentials: provider, BaseEndpoint: endpoint(r.dynamoEndpoint), RetryMaxAttempts: retries})
		key := map[string]ddbtypes.AttributeValue{}
		for name, v := range t.Item {
			key[name] = &ddbtypes.AttributeValueMemberS{Value: v}
		}
		out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(t.Table), Key: key})
		switch {
		case err != nil:
			return classify(err)
		case len(out.Item) == 0:
			return NotFound, nil
		}
		return Found, nil
	}
	// HeadObject needs s3:GetObject, as a read does, but not kms:Decrypt:
	// with a per-tenant key policy, a GetObject the session policy allows
	// could still be denied by KMS, and look like isolation.
	c := s3.New(s3.Options{Region: r.region, Credentials: provider, BaseEndpoint: endpoint(r.s3Endpoint), UsePathStyle: r.s3Endpoint != "", RetryMaxAttempts: retries})
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(t.Bucket), Key: aws.String(t.Key)}); err != nil {
		return classify(err)
	}
	return Found, nil
}

func endpoint(u string) *string {
	if u == "" {
		return nil
	}
	return aws.String(u)
}

// classify sorts a failed read: denied, allowed but absent, or neither.
func classify(err error) (Answer, error) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AccessDenied", "AccessDeniedException", "Forbidden": // Forbidden: a HEAD's 403, which has no body
			return Denied, nil
		case "NoSuchKey", "NotFound":
			return NotFound, nil
		}
	}
	return Failed, err
}
