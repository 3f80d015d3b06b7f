package tenants

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Statuses a tenant item holds.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Attribute names of a tenant item.
const (
	attrTenant   = "tenant_id"
	attrStatus   = "status"
	attrRevision = "revision"
)

// revisionItem is the key of the item holding the store's revision: no
// tenant id can take it, as '#' is outside every tenant pattern's floor.
const revisionItem = "#revision"

// writeAttempts bounds how often a write is tried again when another write
// took the revision it meant to take.
const writeAttempts = 16

// Errors of a write.
var (
	ErrNoSuchTenant = errors.New("no such tenant in the store")
	ErrTenantExists = errors.New("tenant already in the store")
)

// Write modes: whether the tenant must be absent or present first.
type writeMode int

const (
	create writeMode = iota
	update
)

// Item is one tenant of the store.
type Item struct {
	TenantID string
	Status   string
	// Revision is the store's revision at the item's last write.
	Revision int64
	// Attributes are the item's other string attributes.
	Attributes map[string]string
}

// DynamoDB is the part of the DynamoDB API the store uses; *dynamodb.Client
// has it.
type DynamoDB interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Table is the tenant store: a DynamoDB table whose hash key is tenant_id.
// Every write takes the next store revision, kept in one item of its own, in
// the same transaction as the tenant's item, so that a reader that sees a
// revision sees every write up to it. Reads are consistent.
type Table struct {
	db   DynamoDB
	name string
}

// NewTable returns the store in table name.
func NewTable(db DynamoDB, name string) *Table { return &Table{db: db, name: name} }

// Revision is the store's latest revision, 0 before any write.
func (t *Table) Revision(ctx context.Context) (int64, error) {
	out, err := t.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(t.name), Key: key(revisionItem), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, fmt.Errorf("tenant store: read the revision: %w", err)
	}
	rev, _ := number(out.Item[attrRevision])
	return rev, nil
}

// Get reads one tenant; ok is false when the store does not hold it.
func (t *Table) Get(ctx context.Context, id string) (it Item, ok bool, err error) {
	out, err := t.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(t.name), Key: key(id), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Item{}, false, fmt.Errorf("tenant store: read tenant %s: %w", id, err)
	}
	if out.Item == nil {
		return Item{}, false, nil
	}
	return toItem(out.Item), true, nil
}

// Since returns every tenant written after revision rev (0: all of them).
func (t *Table) Since(ctx context.Context, rev int64) ([]Item, error) {
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(t.name),
		ConsistentRead:            aws.Bool(true),
		FilterExpression:          aws.String("#id <> :meta AND (attribute_not_exists(#rev) OR #rev > :rev)"),
		ExpressionAttributeNames:  map[string]string{"#id": attrTenant, "#rev": attrRevision},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":meta": str(revisionItem), ":rev": num(rev)},
	}
	var items []Item
	for {
		out, err := t.db.Scan(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("tenant store: scan: %w", err)
		}
		for _, raw := range out.Items {
			items = append(items, toItem(raw))
		}
		if len(out.LastEvaluatedKey) == 0 {
			return items, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// Create adds a tenant the store does not hold yet, active, with
// attributes, and returns the revision it took; ErrTenantExists when the
// store holds it already.
func (t *Table) Create(ctx context.Context, id string, attrs map[string]string) (int64, error) {
	for k := range attrs {
		if k == attrTenant || k == attrStatus || k == attrRevision {
			return 0, fmt.Errorf("tenant store: attribute %q is the store's own", k)
		}
	}
	return t.write(ctx, id, StatusActive, attrs, create)
}

// SetStatus changes an existing tenant's status and returns the revision
// it took; ErrNoSuchTenant when the store does not hold the tenant.
func (t *Table) SetStatus(ctx context.Context, id, status string) (int64, error) {
	return t.write(ctx, id, status, nil, update)
}

func (t *Table) write(ctx context.Context, id, status string, attrs map[string]string, mode writeMode) (int64, error) {
	if status != StatusActive && status != StatusSuspended {
		return 0, fmt.Errorf("tenant store: status %q is neither %s nor %s", status, StatusActive, StatusSuspended)
	}
	for range writeAttempts {
		cur, err := t.Revision(ctx)
		if err != nil {
			return 0, err
		}
		next := cur + 1
		bump := &ddbtypes.Update{
			TableName:                 aws.String(t.name),
			Key:                       key(revisionItem),
			UpdateExpression:          aws.String("SET #rev = :next"),
			ConditionExpression:       aws.String("attribute_not_exists(#rev) OR #rev = :cur"),
			ExpressionAttributeNames:  map[string]string{"#rev": attrRevision},
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":next": num(next), ":cur": num(cur)},
		}
		set := "SET #status = :status, #rev = :next"
		names := map[string]string{"#status": attrStatus, "#rev": attrRevision}
		values := map[string]ddbtypes.AttributeValue{":status": str(status), ":next": num(next)}
		i := 0
		for k, v := range attrs {
			n, val := fmt.Sprintf("#a%d", i), fmt.Sprintf(":a%d", i)
			set += ", " + n + " = " + val
			names[n], values[val] = k, str(v)
			i++
		}
		item := &ddbtypes.Update{
			TableName: aws.String(t.name), Key: key(id), UpdateExpression: aws.String(set),
			ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		}
		item.ExpressionAttributeNames["#id"] = attrTenant
		item.ConditionExpression = aws.String("attribute_exists(#id)")
		if mode == create {
			item.ConditionExpression = aws.String("attribute_not_exists(#id)")
		}
		_, err = t.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
			TransactItems: []ddbtypes.TransactWriteItem{{Update: bump}, {Update: item}},
		})
		var cancelled *ddbtypes.TransactionCanceledException
		switch {
		case err == nil:
			return next, nil
		case errors.As(err, &cancelled) && len(cancelled.CancellationReasons) == 2 &&
			aws.ToString(cancelled.CancellationReasons[1].Code) == "ConditionalCheckFailed":
			if mode == create {
				return 0, fmt.Errorf("tenant store: %w: %s", ErrTenantExists, id)
			}
			return 0, fmt.Errorf("tenant store: %w: %s", ErrNoSuchTenant, id)
		case errors.As(err, &cancelled):
			continue // another write took the revision first
		default:
			return 0, fmt.Errorf("tenant store: write tenant %s: %w", id, err)
		}
	}
	return 0, fmt.Errorf("tenant store: write tenant %s: the revision moved %d times; try again", id, writeAttempts)
}

func key(id string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{attrTenant: str(id)}
}

func str(s string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: s} }

func num(n int64) ddbtypes.AttributeValue {
	return &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func number(v ddbtypes.AttributeValue) (int64, bool) {
	n, ok := v.(*ddbtypes.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(n.Value, 10, 64)
	return i, err == nil
}

// toItem reads a raw item; attributes other than strings are left out.
func toItem(raw map[string]ddbtypes.AttributeValue) Item {
	it := Item{Attributes: map[string]string{}}
	for k, v := range raw {
		s, isString := v.(*ddbtypes.AttributeValueMemberS)
		switch {
		case k == attrTenant && isString:
			it.TenantID = s.Value
		case k == attrStatus && isString:
			it.Status = s.Value
		case k == attrRevision:
			it.Revision, _ = number(v)
		case isString:
			it.Attributes[k] = s.Value
		}
	}
	return it
}
