package deploy_test

import (
	"fmt"
	"reflect"
	"testing"
)

const tenantAccountTemplate = "cloudformation/tenant-account.yaml"

// tenantAccountParams are a silo tenant's stack parameters.
var tenantAccountParams = map[string]string{
	"VendorServiceRoleArn": "arn:aws:iam::111122223333:role/tokenvendor",
	"ExternalId":           "4f8a3c1e0b9d2a7f6e5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a39281706",
	"TenantId":             "acme",
}

func TestTenantAccountTemplatePassesCfnLint(t *testing.T) { cfnLint(t, tenantAccountTemplate) }

// The tenant's role trusts tokenvendor's service role alone: to assume it
// only with this tenant's ExternalId, to tag the session only with this
// tenant, and nothing else.
func TestTenantAccountRoleTrustsTheServiceRoleWithThisTenantsExternalIdAlone(t *testing.T) {
	tpl := loadTemplateFile(t, tenantAccountTemplate)
	for _, params := range []map[string]string{tenantAccountParams, with(tenantAccountParams, "SourceIdentity", "false", "ManagedPolicyArns", "arn:aws:iam::444455556666:policy/acme-data")} {
		st := deploy(t, tpl, params)
		trust := st.Resources["TenantRole"].Properties["AssumeRolePolicyDocument"]
		want := map[string]any{
			"sts:AssumeRole": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": ref("ExternalId")}},
			"sts:TagSession": map[string]any{"StringEquals": map[string]any{"aws:RequestTag/TenantID": ref("TenantId")}},
		}
		if params["SourceIdentity"] != "false" {
			want["sts:SetSourceIdentity"] = want["sts:TagSession"]
		}
		got := map[string]any{}
		for _, s := range statements(t, trust) {
			if s.Effect != "Allow" || !reflect.DeepEqual(s.Principal, map[string]any{"AWS": ref("VendorServiceRoleArn")}) || s.NotAction != nil {
				t.Errorf("%s: statement %s trusts %v with %s, want Allow of the service role alone", st.name, s.Sid, s.Principal, s.Effect)
			}
			for _, a := range strs(s.Action) {
				got[a] = s.Condition
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: trust by action and condition\n%v\nwant\n%v", st.name, got, want)
		}
	}
}

// The service role may assume roles of tenants' own only when a silo role
// name or a bridge path is given, and then only those.
func TestServiceRoleMayAssumeTenantRolesOnlyWhenAskedFor(t *testing.T) {
	tpl := loadTemplate(t)
	for _, params := range stacks {
		if _, ok := deploy(t, tpl, params).Resources["ServiceRoleTenantRolesPolicy"]; ok {
			t.Errorf("%s: the service role may assume tenant roles nobody asked for", fmt.Sprint(params))
		}
	}
	st := deploy(t, tpl, map[string]string{"SiloRoleName": "TenantAccess", "BridgeRolePath": "/tenants/"})
	doc := st.Resources["ServiceRoleTenantRolesPolicy"].Properties["PolicyDocument"]
	list := statements(t, doc)
	if len(list) != 1 {
		t.Fatalf("%d statements, want 1", len(list))
	}
	if got := sorted(strs(list[0].Action)); !reflect.DeepEqual(got, assumeActions(st, "ServiceRole")) {
		t.Errorf("actions %v, want %v", got, assumeActions(st, "ServiceRole"))
	}
	want := []any{
		map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${SiloRoleName}"},
		map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role${BridgeRolePath}*"},
	}
	if !reflect.DeepEqual(list[0].Resource, want) {
		t.Errorf("resources %v, want %v", list[0].Resource, want)
	}
	if list[0].Condition != nil {
		t.Errorf("a condition %v nobody asked for", list[0].Condition)
	}
	org := deploy(t, tpl, map[string]string{"SiloRoleName": "TenantAccess", "TenantOrganizationId": "o-a1b2c3d4e5"})
	cond := statements(t, org.Resources["ServiceRoleTenantRolesPolicy"].Properties["PolicyDocument"])[0].Condition
	if want := map[string]any{"StringEquals": map[string]any{"aws:ResourceOrgID": ref("TenantOrganizationId")}}; !reflect.DeepEqual(cond, want) {
		t.Errorf("with TenantOrganizationId: condition %v, want %v", cond, want)
	}
}
