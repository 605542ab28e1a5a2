package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// Listing limits for ListCommands.
const (
	DefaultCommandLimit = 100
	MaxCommandLimit     = 1000
	// MaxBulkCommandLimit is higher because a bulk's status lists all of
	// its commands at once.
	MaxBulkCommandLimit = 100_000
)

// openStates is the WHERE clause of the partial index
// commands_device_open; it must stay textually identical to it.
const openStates = `state IN ('queued', 'sent', 'received')`

// unreceivedStates is the WHERE clause of the partial index
// commands_unreceived_expiry; it must stay textually identical to it.
const unreceivedStates = `state IN ('queued', 'sent')`

// The open-command queries name their index: without ANALYZE statistics
// the planner would rather take commands_state and sort.
//
// dueCommandsQuery has one arm per hub.DueQuery condition, each on the
// index that reads only what may be due, so a sweep never reads the
// queued commands that merely wait (thousands after a bulk send to
// offline devices): the TTL index up to now, the sent and received
// commands (in flight, few), and the queued ones of the listed devices.
// UNION drops a command that two arms find.
const (
	pendingCommandsQuery = `SELECT ` + commandColumns + ` FROM commands INDEXED BY commands_device_open
		WHERE device_id = ? AND ` + openStates + ` ORDER BY created_at, id`
	dueCommandsQuery = `SELECT ` + dueCommandColumns + ` FROM commands INDEXED BY commands_unreceived_expiry
			WHERE ` + unreceivedStates + ` AND expires_at <= @now
		UNION SELECT ` + dueCommandColumns + ` FROM commands INDEXED BY commands_state
			WHERE state IN ('sent', 'received') AND (sent_at < @sent_before
				OR state = 'received' AND received_at + timeout_ms * 1000000 + @grace <= @now)
		UNION SELECT ` + dueCommandColumns + ` FROM commands INDEXED BY commands_device_open
			WHERE device_id IN (SELECT value FROM json_each(@devices)) AND ` + openStates + ` AND state = 'queued'
		ORDER BY created_at, id LIMIT @limit`
)

const commandColumns = `id, bulk_id, device_id, name, args, sent_by, state, created_at, expires_at,
	timeout_ms, sent_at, received_at, finished_at, exit_code, stdout, stderr, truncated, duration_ms,
	error, version`

// dueCommandColumns is commandColumns with empty strings in place of the
// output, which the sweep never needs and which may be 512 KiB a command.
const dueCommandColumns = `id, bulk_id, device_id, name, args, sent_by, state, created_at, expires_at,
	timeout_ms, sent_at, received_at, finished_at, exit_code, '', '', truncated, duration_ms,
	error, version`

const insertCommandQuery = `INSERT INTO commands (` + commandColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// updateCommandQuery writes everything but the id, which is the key.
const updateCommandQuery = `UPDATE commands SET bulk_id = ?, device_id = ?, name = ?, args = ?,
	sent_by = ?, state = ?, created_at = ?, expires_at = ?, timeout_ms = ?, sent_at = ?,
	received_at = ?, finished_at = ?, exit_code = ?, stdout = ?, stderr = ?, truncated = ?,
	duration_ms = ?, error = ?, version = ? WHERE id = ?`

// CreateCommands inserts cmds in one transaction: all or none. ErrNotFound
// if a command's device does not exist, ErrConflict if it is revoked or a
// command id is taken, ErrInvalidInput for an unknown state.
func (s *Store) CreateCommands(ctx context.Context, cmds []hub.Command) error {
	if len(cmds) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create commands: %w", err)
	}
	defer tx.Rollback()
	// Prepared once per call: a bulk send inserts thousands of rows.
	ins, err := tx.PrepareContext(ctx, insertCommandQuery)
	if err != nil {
		return fmt.Errorf("create commands: %w", err)
	}
	defer ins.Close()
	dev, err := tx.PrepareContext(ctx, `SELECT revoked_at IS NOT NULL FROM devices WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("create commands: %w", err)
	}
	defer dev.Close()
	checked := make(map[string]bool, len(cmds))
	for i := range cmds {
		c := &cmds[i]
		if !c.State.Valid() {
			return fmt.Errorf("%w: command %s: state %q", hub.ErrInvalidInput, c.ID, c.State)
		}
		if !checked[c.DeviceID] {
			if err := checkDevice(ctx, dev, c.DeviceID); err != nil {
				return err
			}
			checked[c.DeviceID] = true
		}
		args, err := commandArgs(c)
		if err != nil {
			return err
		}
		_, err = ins.ExecContext(ctx, append([]any{c.ID}, commandValues(c, args)...)...)
		if isUniqueViolation(err) {
			return fmt.Errorf("command %s: %w", c.ID, hub.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert command %s: %w", c.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create commands: %w", err)
	}
	return nil
}

// checkDevice refuses commands for devices that cannot ever run them, so
// the caller hears so now rather than at TTL expiry.
func checkDevice(ctx context.Context, stmt *sql.Stmt, id string) error {
	var revoked bool
	err := stmt.QueryRowContext(ctx, id).Scan(&revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("device %s %w", id, hub.ErrNotFound)
	case err != nil:
		return fmt.Errorf("check device %s: %w", id, err)
	case revoked:
		return fmt.Errorf("device %s is revoked: %w", id, hub.ErrConflict)
	}
	return nil
}

// commandArgs encodes Args; NULL for nil keeps nil and empty apart.
func commandArgs(c *hub.Command) (sql.NullString, error) {
	if c.Args == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(c.Args)
	if err != nil {
		return sql.NullString{}, fmt.Errorf("command %s: encode args: %w", c.ID, err)
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// commandValues returns the columns after id, in commandColumns order.
func commandValues(c *hub.Command, args sql.NullString) []any {
	bulk := sql.NullString{String: c.BulkID, Valid: c.BulkID != ""}
	truncated := 0
	if c.Truncated {
		truncated = 1
	}
	var exit sql.NullInt64
	if c.ExitCode != nil {
		exit = sql.NullInt64{Int64: *c.ExitCode, Valid: true}
	}
	return []any{bulk, c.DeviceID, c.Name, args, c.SentBy, string(c.State),
		unixNano(c.CreatedAt), unixNano(c.ExpiresAt), c.TimeoutMs,
		nullNano(c.SentAt), nullNano(c.ReceivedAt), nullNano(c.FinishedAt), exit,
		c.Stdout, c.Stderr, truncated, c.DurationMs, c.Error, c.Version}
}

// scanCommand reads commandColumns through scan (a Row or Rows Scan).
func scanCommand(scan func(dest ...any) error) (hub.Command, error) {
	var (
		c                        hub.Command
		bulk, args               sql.NullString
		created, expires         int64
		sent, received, finished sql.NullInt64
		exit                     sql.NullInt64
		truncated                int64
	)
	err := scan(&c.ID, &bulk, &c.DeviceID, &c.Name, &args, &c.SentBy, &c.State, &created, &expires,
		&c.TimeoutMs, &sent, &received, &finished, &exit, &c.Stdout, &c.Stderr, &truncated,
		&c.DurationMs, &c.Error, &c.Version)
	if err != nil {
		return hub.Command{}, err
	}
	if args.Valid {
		if err := json.Unmarshal([]byte(args.String), &c.Args); err != nil {
			return hub.Command{}, fmt.Errorf("command %s: decode args: %w", c.ID, err)
		}
		if c.Args == nil { // stored "null" would otherwise read back as nil
			c.Args = map[string]string{}
		}
	}
	c.BulkID = bulk.String
	c.CreatedAt, c.ExpiresAt = fromNano(created), fromNano(expires)
	c.SentAt, c.ReceivedAt, c.FinishedAt = fromNullNano(sent), fromNullNano(received), fromNullNano(finished)
	if exit.Valid {
		c.ExitCode = &exit.Int64
	}
	c.Truncated = truncated != 0
	return c, nil
}

// GetCommand returns one command; ErrNotFound if there is none.
func (s *Store) GetCommand(ctx context.Context, id string) (hub.Command, error) {
	return getCommand(ctx, s.db, id)
}

// queryRower is what getCommand needs of a *sql.DB or *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getCommand(ctx context.Context, db queryRower, id string) (hub.Command, error) {
	row := db.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM commands WHERE id = ?`, id)
	c, err := scanCommand(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return hub.Command{}, fmt.Errorf("command %s %w", id, hub.ErrNotFound)
	}
	if err != nil {
		return hub.Command{}, fmt.Errorf("get command: %w", err)
	}
	return c, nil
}

// ListCommands returns the commands matching f, newest first (by creation
// time, then id). Limit defaults to DefaultCommandLimit and is capped at
// MaxCommandLimit, or MaxBulkCommandLimit when f.BulkID is set. ErrNotFound
// if f.BeforeID names no command, ErrInvalidInput for an unknown state.
func (s *Store) ListCommands(ctx context.Context, f hub.CommandFilter) ([]hub.Command, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.DeviceID != "" {
		add(`device_id = ?`, f.DeviceID)
	}
	if f.BulkID != "" {
		add(`bulk_id = ?`, f.BulkID)
	}
	if f.State != "" {
		if !f.State.Valid() {
			return nil, fmt.Errorf("%w: command state %q", hub.ErrInvalidInput, f.State)
		}
		add(`state = ?`, string(f.State))
	}
	if f.BeforeID != "" {
		var created int64
		err := s.db.QueryRowContext(ctx, `SELECT created_at FROM commands WHERE id = ?`, f.BeforeID).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("before: command %s %w", f.BeforeID, hub.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list commands: %w", err)
		}
		add(`(created_at, id) < (?, ?)`, created, f.BeforeID)
	}
	q := `SELECT ` + commandColumns + ` FROM commands`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	return s.queryCommands(ctx, "list commands", q, append(args, listLimit(f))...)
}

func listLimit(f hub.CommandFilter) int {
	maxLimit := MaxCommandLimit
	if f.BulkID != "" {
		maxLimit = MaxBulkCommandLimit
	}
	switch {
	case f.Limit <= 0:
		return DefaultCommandLimit
	case f.Limit > maxLimit:
		return maxLimit
	}
	return f.Limit
}

func (s *Store) queryCommands(ctx context.Context, op, q string, args ...any) ([]hub.Command, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	cmds := []hub.Command{}
	for rows.Next() {
		c, err := scanCommand(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		cmds = append(cmds, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return cmds, nil
}

// UpdateCommand runs fn on the stored command inside a write transaction
// (taken IMMEDIATE, see dsn, so concurrent updates serialize instead of
// losing each other's changes) and saves the result with Version+1; fn
// cannot change the id or set the version. If fn returns an error nothing
// is saved and the error is returned unwrapped, with the command as it was
// before fn ran. ErrNotFound if there is no such command.
func (s *Store) UpdateCommand(ctx context.Context, id string, fn func(*hub.Command) error) (hub.Command, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return hub.Command{}, fmt.Errorf("update command: %w", err)
	}
	defer tx.Rollback()
	before, err := getCommand(ctx, tx, id)
	if err != nil {
		return hub.Command{}, err
	}
	c := cloneCommand(before)
	if err := fn(&c); err != nil {
		return before, err
	}
	if !c.State.Valid() {
		return before, fmt.Errorf("%w: command %s: state %q", hub.ErrInvalidInput, id, c.State)
	}
	c.ID, c.Version = id, before.Version+1
	args, err := commandArgs(&c)
	if err != nil {
		return before, err
	}
	if _, err := tx.ExecContext(ctx, updateCommandQuery, append(commandValues(&c, args), id)...); err != nil {
		return before, fmt.Errorf("update command %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return before, fmt.Errorf("update command %s: %w", id, err)
	}
	return c, nil
}

// cloneCommand copies c deeply, so fn's changes to the map or pointers
// cannot reach the copy returned when fn fails.
func cloneCommand(c hub.Command) hub.Command {
	c.Args = maps.Clone(c.Args)
	c.SentAt, c.ReceivedAt, c.FinishedAt = clonePtr(c.SentAt), clonePtr(c.ReceivedAt), clonePtr(c.FinishedAt)
	c.ExitCode = clonePtr(c.ExitCode)
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// PendingCommands returns deviceID's queued, sent and received commands,
// oldest first.
func (s *Store) PendingCommands(ctx context.Context, deviceID string) ([]hub.Command, error) {
	return s.queryCommands(ctx, "pending commands", pendingCommandsQuery, deviceID)
}

// DueCommands returns the open commands due for action at q.Now (see
// hub.DueQuery), oldest first and without their output (Stdout and Stderr
// empty); q.Limit <= 0 means no limit.
func (s *Store) DueCommands(ctx context.Context, q hub.DueQuery) ([]hub.Command, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	if q.QueuedOf == nil {
		q.QueuedOf = []string{} // "[]", not "null": json_each would yield a row
	}
	devices, err := json.Marshal(q.QueuedOf)
	if err != nil {
		return nil, fmt.Errorf("due commands: %w", err)
	}
	return s.queryCommands(ctx, "due commands", dueCommandsQuery,
		sql.Named("now", unixNano(q.Now)), sql.Named("sent_before", unixNano(q.Now.Add(-q.RedeliverAfter))),
		sql.Named("grace", q.ResultGrace.Nanoseconds()), sql.Named("devices", string(devices)),
		sql.Named("limit", limit))
}

// DevicesMatching returns the non-revoked devices whose labels contain
// every key=value of selector (all non-revoked devices for an empty one),
// sorted by id.
func (s *Store) DevicesMatching(ctx context.Context, selector map[string]string) ([]hub.Device, error) {
	q := `SELECT ` + deviceColumns + ` FROM devices WHERE revoked_at IS NULL`
	args := make([]any, 0, 2*len(selector))
	// json_each matches keys literally; a JSON path would need quoting for
	// keys with dots.
	for k, v := range selector {
		q += ` AND EXISTS (SELECT 1 FROM json_each(devices.labels) WHERE key = ? AND type = 'text' AND value = ?)`
		args = append(args, k, v)
	}
	q += ` ORDER BY id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("devices matching: %w", err)
	}
	defer rows.Close()
	devices := []hub.Device{}
	for rows.Next() {
		d, err := scanDevice(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("devices matching: %w", err)
		}
		devices = append(devices, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("devices matching: %w", err)
	}
	return devices, nil
}

// nullNano stores a time that may not have happened yet.
func nullNano(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: unixNano(*t), Valid: true}
}
