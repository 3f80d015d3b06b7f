// Package docs holds tokenvendor's documentation (the Markdown files beside
// this one) and, in docs_test.go, the tests that keep it true to the code:
// every config key, every metric, every link and every package is checked.
package docs
