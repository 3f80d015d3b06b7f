package revoke_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// fakeIAM keeps the versions of one managed policy as IAM does: numbered
// v1, v2, … in the order they are created, at most five, the default
// never deleted, documents returned URL-encoded (RFC 3986).
type fakeIAM struct {
	mu       sync.Mutex
	arn      string
	versions []fakeVersion
	next     int
	// defaultVersion is the id of the default version.
	defaultVersion string
	// creates and deletes count the calls that changed the policy.
	creates, deletes int
	// beforeCreate, when set, runs at the start of each CreatePolicyVersion
	// call (its number, from 1), without the lock: another writer.
	beforeCreate func(call int)
}

type fakeVersion struct {
	id       string
	document string
}

// newFakeIAM makes a policy whose versions hold docs, the last default.
func newFakeIAM(arn string, docs ...string) *fakeIAM {
	f := &fakeIAM{arn: arn, next: 1}
	for _, d := range docs {
		f.add(d)
	}
	return f
}

// add creates a version as the default; the caller holds the lock.
func (f *fakeIAM) add(doc string) string {
	id := fmt.Sprintf("v%d", f.next)
	f.next++
	f.versions = append(f.versions, fakeVersion{id: id, document: doc})
	f.defaultVersion = id
	return id
}

func (f *fakeIAM) check(arn *string) error {
	if aws.ToString(arn) != f.arn {
		return &types.NoSuchEntityException{Message: aws.String("Policy " + aws.ToString(arn) + " was not found.")}
	}
	return nil
}

// Default returns the default version's id and its document, decoded.
func (f *fakeIAM) Default() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.versions {
		if v.id == f.defaultVersion {
			return v.id, v.document
		}
	}
	return "", ""
}

// IDs lists the versions' ids, oldest first.
func (f *fakeIAM) IDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, v := range f.versions {
		ids = append(ids, v.id)
	}
	return ids
}

func (f *fakeIAM) ListPolicyVersions(_ context.Context, in *iam.ListPolicyVersionsInput, _ ...func(*iam.Options)) (*iam.ListPolicyVersionsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(in.PolicyArn); err != nil {
		return nil, err
	}
	out := &iam.ListPolicyVersionsOutput{}
	// Newest first, as IAM lists them.
	for i := len(f.versions) - 1; i >= 0; i-- {
		v := f.versions[i]
		out.Versions = append(out.Versions, types.PolicyVersion{
			VersionId: aws.String(v.id), IsDefaultVersion: v.id == f.defaultVersion, CreateDate: aws.Time(time.Unix(int64(i), 0)),
		})
	}
	return out, nil
}

func (f *fakeIAM) GetPolicyVersion(_ context.Context, in *iam.GetPolicyVersionInput, _ ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(in.PolicyArn); err != nil {
		return nil, err
	}
	for _, v := range f.versions {
		if v.id == aws.ToString(in.VersionId) {
			return &iam.GetPolicyVersionOutput{PolicyVersion: &types.PolicyVersion{
				VersionId: aws.String(v.id), IsDefaultVersion: v.id == f.defaultVersion,
				Document: aws.String(strings.ReplaceAll(url.PathEscape(v.document), ":", "%3A")),
			}}, nil
		}
	}
	return nil, &types.NoSuchEntityException{Message: aws.String("version not found")}
}

func (f *fakeIAM) CreatePolicyVersion(_ context.Context, in *iam.CreatePolicyVersionInput, _ ...func(*iam.Options)) (*iam.CreatePolicyVersionOutput, error) {
	f.mu.Lock()
	f.creates++
	call, hook := f.creates, f.beforeCreate
	f.mu.Unlock()
	if hook != nil {
		hook(call)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(in.PolicyArn); err != nil {
		return nil, err
	}
	if len(f.versions) >= 5 {
		return nil, &types.LimitExceededException{Message: aws.String("A managed policy can have up to 5 versions.")}
	}
	if !in.SetAsDefault {
		return nil, fmt.Errorf("fake: a version written not as the default")
	}
	id := f.add(aws.ToString(in.PolicyDocument))
	return &iam.CreatePolicyVersionOutput{PolicyVersion: &types.PolicyVersion{VersionId: aws.String(id), IsDefaultVersion: true}}, nil
}

func (f *fakeIAM) DeletePolicyVersion(_ context.Context, in *iam.DeletePolicyVersionInput, _ ...func(*iam.Options)) (*iam.DeletePolicyVersionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(in.PolicyArn); err != nil {
		return nil, err
	}
	id := aws.ToString(in.VersionId)
	if id == f.defaultVersion {
		return nil, &types.DeleteConflictException{Message: aws.String("Cannot delete the default version of a policy.")}
	}
	for i, v := range f.versions {
		if v.id == id {
			f.versions = append(f.versions[:i], f.versions[i+1:]...)
			f.deletes++
			return &iam.DeletePolicyVersionOutput{}, nil
		}
	}
	return nil, &types.NoSuchEntityException{Message: aws.String("version not found")}
}

// SetDefault makes version id the default.
func (f *fakeIAM) SetDefault(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.defaultVersion = id
}

// Write adds a version as another writer would, as the default.
func (f *fakeIAM) Write(doc string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.add(doc)
}
