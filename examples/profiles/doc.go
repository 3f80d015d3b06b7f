// Package profiles holds example profiles, one config file per isolation
// pattern (DynamoDB by leading keys, S3 by prefix, S3 and DynamoDB by ABAC
// on the session's TenantID tag, KMS by encryption context, Secrets
// Manager by name prefix, Amazon Bedrock by the tenant's tagged
// application inference profiles) and, in its tests, their proof: an independent
// IAM evaluator decides a table of requests for each, with the access
// role's policies of deploy/cloudformation/iam.yaml and the session policy
// and tags `tokenvendor render` prints.
package profiles
