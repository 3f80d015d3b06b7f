package config

import (
	"time"

	"github.com/tokenvendor/tokenvendor/internal/cache"
)

// Cache configures the credential cache.
type Cache struct {
	MaxEntries int `yaml:"max_entries"`
	// RefreshAhead is the share of the lifetime left when a background
	// refresh starts; RefreshJitter the random share added to it.
	RefreshAhead  float64 `yaml:"refresh_ahead"`
	RefreshJitter float64 `yaml:"refresh_jitter"`
	// MinRemaining is the least remaining life credentials are handed out
	// with; zero means a quarter of their duration.
	MinRemaining time.Duration `yaml:"min_remaining"`
	// StaleFloor is the least remaining life cached credentials are still
	// served with while STS fails recoverably.
	StaleFloor time.Duration `yaml:"stale_floor"`
	// BackgroundRefreshRate bounds background refreshes per second.
	BackgroundRefreshRate float64 `yaml:"background_refresh_rate"`
}

// validate fills the cache section's defaults and checks it.
func (cc *Cache) validate(bad reporter) {
	setDefault(&cc.MaxEntries, DefaultMaxEntries)
	if cc.MaxEntries < 0 {
		bad("cache.max_entries", "negative")
	}
	setDefault(&cc.RefreshAhead, DefaultRefreshAhead)
	setDefault(&cc.RefreshJitter, DefaultRefreshJitter)
	setDefault(&cc.StaleFloor, DefaultStaleFloor)
	setDefault(&cc.BackgroundRefreshRate, DefaultRefreshRate)
	if err := cache.CheckRefresh(cc.RefreshAhead, cc.RefreshJitter); err != nil {
		bad("cache.refresh_ahead", "%v", err)
	}
	if cc.MinRemaining < 0 {
		bad("cache.min_remaining", "negative")
	}
	if cc.StaleFloor < 0 {
		bad("cache.stale_floor", "negative")
	} else if err := cache.CheckStaleFloor(cc.StaleFloor, cc.MinRemaining); err != nil {
		bad("cache.stale_floor", "%v (cache.min_remaining)", err)
	}
	if cc.BackgroundRefreshRate < 0 {
		bad("cache.background_refresh_rate", "negative")
	}
}
