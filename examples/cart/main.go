// Command cart is the lost update: two workers add an item to the same
// cart at the same moment, each reading the cart from SQLite, working for a
// moment, and writing it back. Without a lock the second write erases the
// first worker's item; with Locker.Do around the read-modify-write nothing
// is lost. Moving an item between two carts needs both carts' locks:
// Locker.ObtainMany takes them in sorted order, so two workers naming the
// carts in opposite orders cannot deadlock.
//
//	cd examples && go run ./cart
//	cd examples && go run ./cart -redis localhost:6379
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/examples/internal/demo"
)

type config struct {
	RedisAddr string        // empty: embedded miniredis
	Think     time.Duration // how long a worker works between reading a cart and writing it
}

func main() {
	cfg := config{}
	flag.StringVar(&cfg.RedisAddr, "redis", "", "Redis address (default: an embedded miniredis)")
	flag.DurationVar(&cfg.Think, "think", 100*time.Millisecond, "time between reading a cart and writing it back")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "cart:", err)
		os.Exit(1)
	}
}

// worker is one process handling cart requests: its own database pool,
// Redis client and Locker.
type worker struct {
	db     *sql.DB
	locker *stampede.Locker
	think  time.Duration
}

// lockTTL bounds how long a crashed worker could keep a cart locked.
const lockTTL = 5 * time.Second

func run(ctx context.Context, w io.Writer, cfg config) error {
	rds, err := demo.StartRedis(ctx, cfg.RedisAddr)
	if err != nil {
		return err
	}
	ns := demo.Namespace("cart")
	defer rds.Close(context.WithoutCancel(ctx), ns)

	dbFile, err := demo.NewSQLite("carts.db")
	if err != nil {
		return err
	}
	defer dbFile.Remove()

	var a, b worker
	for _, wk := range []*worker{&a, &b} {
		db, err := dbFile.Open()
		if err != nil {
			return err
		}
		defer db.Close()
		rdb := rds.Client()
		defer rdb.Close()
		l, err := stampede.NewLocker(rdb, stampede.LockerOptions{Namespace: ns})
		if err != nil {
			return err
		}
		*wk = worker{db: db, locker: l, think: cfg.Think}
	}
	if _, err := a.db.ExecContext(ctx, `CREATE TABLE carts (id INTEGER PRIMARY KEY, items TEXT NOT NULL)`); err != nil {
		return err
	}

	fmt.Fprintf(w, "Cart 42 starts empty. Worker A adds socks, worker B shoes, at the same moment:\n")
	fmt.Fprintf(w, "each reads the cart, works %v, writes it back. Carts in SQLite; Redis: %s.\n\n", cfg.Think, rds)

	// Without a lock.
	if err := fill(ctx, a.db, map[int][]string{42: {}}); err != nil {
		return err
	}
	if err := both(
		func() error { return a.addItem(ctx, 42, "socks") },
		func() error { return b.addItem(ctx, 42, "shoes") },
	); err != nil {
		return err
	}
	if err := show(ctx, w, a.db, "without a lock", map[int][]string{42: {"socks", "shoes"}}); err != nil {
		return err
	}

	// With the cart's lock held around the read-modify-write.
	if err := fill(ctx, a.db, map[int][]string{42: {}}); err != nil {
		return err
	}
	locked := func(wk worker, item string) func() error {
		return func() error {
			return wk.locker.Do(ctx, "cart:42", lockTTL, func(ctx context.Context) error {
				return wk.addItem(ctx, 42, item)
			})
		}
	}
	if err := both(locked(a, "socks"), locked(b, "shoes")); err != nil {
		return err
	}
	if err := show(ctx, w, a.db, "with Locker.Do", map[int][]string{42: {"socks", "shoes"}}); err != nil {
		return err
	}

	// Two carts, locked together; the workers name them in opposite orders.
	fmt.Fprintf(w, "\nCart 1 holds a hat and gloves, cart 2 a scarf. At the same moment worker A moves the hat\n")
	fmt.Fprintf(w, "to cart 2 and worker B the scarf to cart 1. Each locks both carts with ObtainMany, A naming\n")
	fmt.Fprintf(w, "them cart:1, cart:2 and B cart:2, cart:1; ObtainMany takes them in sorted order: no deadlock.\n\n")
	if err := fill(ctx, a.db, map[int][]string{1: {"hat", "gloves"}, 2: {"scarf"}}); err != nil {
		return err
	}
	if err := both(
		func() error { return a.moveLocked(ctx, "hat", 1, 2, []string{"cart:1", "cart:2"}) },
		func() error { return b.moveLocked(ctx, "scarf", 2, 1, []string{"cart:2", "cart:1"}) },
	); err != nil {
		return err
	}
	return show(ctx, w, a.db, "with ObtainMany", map[int][]string{1: {"gloves", "scarf"}, 2: {"hat"}})
}

// addItem is the read-modify-write that loses updates when two run at once.
func (wk worker) addItem(ctx context.Context, cart int, item string) error {
	items, err := readCart(ctx, wk.db, cart)
	if err != nil {
		return err
	}
	time.Sleep(wk.think) // checking stock, pricing, ... while another worker reads the same cart
	return writeCarts(ctx, wk.db, map[int][]string{cart: append(items, item)})
}

// moveLocked moves item between two carts while holding both carts' locks.
// ObtainMany takes them in sorted order whatever the order of keys, so a
// worker holding cart:1 and waiting for cart:2 never meets one holding
// cart:2 and waiting for cart:1.
func (wk worker) moveLocked(ctx context.Context, item string, from, to int, keys []string) error {
	locks, err := wk.locker.ObtainMany(ctx, keys, lockTTL)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range locks {
			_ = l.Release(context.WithoutCancel(ctx)) // a failed release only leaves the lease to expire
		}
	}()
	src, err := readCart(ctx, wk.db, from)
	if err != nil {
		return err
	}
	dst, err := readCart(ctx, wk.db, to)
	if err != nil {
		return err
	}
	time.Sleep(wk.think)
	i := slices.Index(src, item)
	if i < 0 {
		return fmt.Errorf("cart %d has no %s", from, item)
	}
	return writeCarts(ctx, wk.db, map[int][]string{from: slices.Delete(src, i, i+1), to: append(dst, item)})
}

// both runs f and g at the same moment and returns their errors.
func both(f, g func() error) error {
	var wg sync.WaitGroup
	var ef, eg error
	start := make(chan struct{})
	wg.Go(func() { <-start; ef = f() })
	wg.Go(func() { <-start; eg = g() })
	close(start)
	wg.Wait()
	return errors.Join(ef, eg)
}

func readCart(ctx context.Context, db *sql.DB, cart int) ([]string, error) {
	var raw string
	if err := db.QueryRowContext(ctx, `SELECT items FROM carts WHERE id = ?`, cart).Scan(&raw); err != nil {
		return nil, fmt.Errorf("cart %d: %w", cart, err)
	}
	var items []string
	return items, json.Unmarshal([]byte(raw), &items)
}

// writeCarts replaces the items of the given carts in one transaction.
func writeCarts(ctx context.Context, db *sql.DB, carts map[int][]string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for id, items := range carts {
		raw, err := json.Marshal(items)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE carts SET items = ? WHERE id = ?`, string(raw), id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// fill resets the carts table to carts.
func fill(ctx context.Context, db *sql.DB, carts map[int][]string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM carts`); err != nil {
		return err
	}
	for id := range carts {
		if _, err := db.ExecContext(ctx, `INSERT INTO carts (id, items) VALUES (?, '[]')`, id); err != nil {
			return err
		}
	}
	return writeCarts(ctx, db, carts)
}

// show prints the carts that want names, and how many of the items that
// should be in them are missing.
func show(ctx context.Context, w io.Writer, db *sql.DB, what string, want map[int][]string) error {
	ids := make([]int, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var carts []string
	lost, total := 0, 0
	for _, id := range ids {
		items, err := readCart(ctx, db, id)
		if err != nil {
			return err
		}
		carts = append(carts, fmt.Sprintf("cart %d: [%s]", id, strings.Join(items, " ")))
		for _, it := range want[id] {
			total++
			if !slices.Contains(items, it) {
				lost++
			}
		}
	}
	_, err := fmt.Fprintf(w, "%-16s %-38s %d of %d items lost\n", what, strings.Join(carts, "  "), lost, total)
	return err
}
