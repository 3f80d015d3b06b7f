package client

import "github.com/tokenvendor/tokenvendor/wire"

// Names this package exported before package wire held the HTTP contract;
// they stay, the same values, for code written against them.
const (
	// TenantTokenHeader carries Config.TenantToken's token.
	//
	// Deprecated: use wire.TenantTokenHeader.
	TenantTokenHeader = wire.TenantTokenHeader
	// ServerIDHeader is the signed header naming the tokenvendor a
	// request is for.
	//
	// Deprecated: use wire.ServerIDHeader.
	ServerIDHeader = wire.ServerIDHeader
	// AWSIAMScheme is the Authorization scheme of a signed AWS request,
	// with its space, as AWSIAMToken's tokens start.
	//
	// Deprecated: use wire.SchemeAWSIAM.
	AWSIAMScheme = wire.SchemeAWSIAM + " "
)

// AuthorizationHeader is the Authorization value that presents token.
//
// Deprecated: use wire.Authorization.
func AuthorizationHeader(token string) string { return wire.Authorization(token) }
