package testsupport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// StartMoto runs moto_server (on these machines' PATH) on a free loopback
// port and waits until it answers GET /moto-api/data.json. Its state is
// its own: each call gets an empty AWS. stop kills it.
func StartMoto() (url string, stop func(), err error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return "", nil, fmt.Errorf("moto_server not on PATH (pip install 'moto[server]'): %w", err)
	}
	for range 5 { // a port found free may be taken before moto binds it
		url, stop, err = startMoto(bin)
		if err == nil {
			return url, stop, nil
		}
	}
	return "", nil, err
}

func startMoto(bin string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	host, port, _ := net.SplitHostPort(addr)
	var logs Buffer
	cmd := exec.Command(bin, "-H", host, "-p", port)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { _ = cmd.Process.Kill(); <-exited }
	url := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	err = Poll(30*time.Second, func() error {
		select {
		case <-exited:
			return Final(errors.New("exited"))
		default:
		}
		resp, err := client.Get(url + "/moto-api/data.json")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("answered %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("moto_server on %s: %w:\n%s", addr, err, logs.String())
	}
	return url, stop, nil
}

// CreateTenantTable makes a tenant store table (hash key tenant_id, a
// string), as deploy/cloudformation/iam.yaml does, at the DynamoDB of
// endpoint (moto's), and returns a client of it.
func CreateTenantTable(endpoint, name string) (*dynamodb.Client, error) {
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	_, err := db.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("tenant_id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("tenant_id"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	return db, err
}
