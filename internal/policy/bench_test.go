package policy_test

import (
	"fmt"
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
	b.Run("remembered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tmpl.Render("acme"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		// More tenants than the template remembers, so every rendering is new.
		ids := make([]string, 3*10_000)
		for i := range ids {
			ids[i] = fmt.Sprintf("tenant%05d", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := tmpl.Render(ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
