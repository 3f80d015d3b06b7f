// Package deploy holds tokenvendor's deployment manifests (Kubernetes with
// kustomize, ECS, IAM as CloudFormation, a Lambda function in tenant isolation
// mode behind API Gateway) and, in its tests, the checks that
// keep them rendering, wired and no wider than documented.
package deploy
