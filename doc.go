// Package stampede protects a database from cache stampedes across a fleet
// of servers sharing one Redis.
package stampede
