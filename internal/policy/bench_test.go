package policy_test

import (
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

func BenchmarkRender(b *testing.B) {
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := policy.Compile(policy.Spec{
		Profile: "objects",
		Policy: `{"Version":"2012-10-17","Statement":[
		  {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":["arn:aws:s3:::data/{{ .TenantID }}/*"]},
		  {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::data","Condition":{"StringLike":{"s3:prefix":["{{ .TenantID }}/*"]}}}]}`,
		Tags: map[string]string{"TenantID": "{{ .TenantID }}"},
	}, tenants)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Render("acme"); err != nil {
			b.Fatal(err)
		}
	}
}
