package store

import (
	"context"
	"fmt"

	"github.com/fleetwire/fleetwire/hub"
)

// MaxDeadLetterList caps one ListDeadLetters page.
const MaxDeadLetterList = 1000

// AddDeadLetters stores dead letters in one transaction. A zero At is set
// to now. The IDs of dl are ignored: the database assigns them.
func (s *Store) AddDeadLetters(ctx context.Context, dl []hub.DeadLetter) error {
	if len(dl) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add dead letters: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO dead_letters (device_id, line, error, at) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("add dead letters: %w", err)
	}
	defer stmt.Close()
	now := s.now()
	for _, d := range dl {
		at := d.At
		if at.IsZero() {
			at = now
		}
		if _, err := stmt.ExecContext(ctx, d.DeviceID, d.Line, d.Error, unixNano(at)); err != nil {
			return fmt.Errorf("add dead letters: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add dead letters: %w", err)
	}
	return nil
}

// ListDeadLetters returns up to limit (1..MaxDeadLetterList) dead letters,
// newest first.
func (s *Store) ListDeadLetters(ctx context.Context, limit int) ([]hub.DeadLetter, error) {
	if limit < 1 || limit > MaxDeadLetterList {
		return nil, fmt.Errorf("%w: limit %d not in 1..%d", hub.ErrInvalidInput, limit, MaxDeadLetterList)
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, device_id, line, error, at FROM dead_letters ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	out := []hub.DeadLetter{}
	for rows.Next() {
		var (
			d  hub.DeadLetter
			at int64
		)
		if err := rows.Scan(&d.ID, &d.DeviceID, &d.Line, &d.Error, &at); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		d.At = fromNano(at)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// CountDeadLetters returns how many dead letters are stored.
func (s *Store) CountDeadLetters(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM dead_letters`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}
