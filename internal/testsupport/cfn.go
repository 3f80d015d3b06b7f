package testsupport

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// LongForm decodes a YAML node of a CloudFormation template, writing CloudFormation's short-form tags as
// the long form: !Ref X is {"Ref": X}, !GetAtt A.B is {"Fn::GetAtt": [A, B]},
// !Condition C is {"Condition": C}, !Name V is {"Fn::Name": V}.
func LongForm(n *yaml.Node) any {
	if tag := n.Tag; strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!") {
		plain := *n
		plain.Tag = ""
		v := LongForm(&plain)
		switch name := tag[1:]; name {
		case "Ref", "Condition":
			return map[string]any{name: v}
		case "GetAtt":
			if s, ok := v.(string); ok {
				res, attr, _ := strings.Cut(s, ".")
				return map[string]any{"Fn::GetAtt": []any{res, attr}}
			}
			return map[string]any{"Fn::GetAtt": v}
		default:
			return map[string]any{"Fn::" + name: v}
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		return LongForm(n.Content[0])
	case yaml.AliasNode:
		return LongForm(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = LongForm(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			s = append(s, LongForm(c))
		}
		return s
	default:
		var v any
		_ = n.Decode(&v)
		return v
	}
}
