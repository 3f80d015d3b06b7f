package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/cache"
)

func BenchmarkGetHit(b *testing.B) {
	c, err := cache.New[int64](cache.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	fetch := func(context.Context) (int64, time.Time, error) { return 1, time.Now().Add(time.Hour), nil }
	ctx := context.Background()
	c.Get(ctx, cache.Key{ID: "k"}, fetch)
	b.ReportAllocs()
	for b.Loop() {
		if _, r, _ := c.Get(ctx, cache.Key{ID: "k"}, fetch); r != cache.Hit {
			b.Fatal(r)
		}
	}
}
