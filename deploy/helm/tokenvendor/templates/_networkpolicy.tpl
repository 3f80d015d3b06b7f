{{/* Egress both the service and the canary need: DNS, then 443 (STS, the
identity provider's key set, the tenant store, S3 and DynamoDB for the
canary) and Redis, outside the cluster. */}}
{{- define "tokenvendor.egress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    - port: 443
      protocol: TCP
{{- if .Values.redis.enabled }}
# Redis (ElastiCache, TLS): its nodes' addresses change on failover; its
# security group admits only the pods'.
- ports:
    - port: {{ .Values.redis.port }}
      protocol: TCP
{{- end }}
{{- end -}}
