package postgres

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestUUIDsTravelInBinary: with registerUUID a uuid.UUID is encoded as the
// 16 bytes of the binary uuid and scanned back from them, also through a
// pointer (a nullable column), without the detour through text that pgx
// takes for a driver.Valuer (format, fail in binary, parse, encode again).
func TestUUIDsTravelInBinary(t *testing.T) {
	m := pgtype.NewMap()
	registerUUID(m)
	id := uuid.Must(uuid.NewV7())

	buf, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id, nil)
	if err != nil || !bytes.Equal(buf, id[:]) {
		t.Fatalf("binary encoding: %x, %v; want %x", buf, err, id[:])
	}
	if buf, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, &id, nil); err != nil || !bytes.Equal(buf, id[:]) {
		t.Fatalf("binary encoding through a pointer: %x, %v", buf, err)
	}
	if buf, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, (*uuid.UUID)(nil), nil); err != nil || buf != nil {
		t.Fatalf("a nil pointer must be NULL: %x, %v", buf, err)
	}

	var got uuid.UUID
	if err := m.Scan(pgtype.UUIDOID, pgtype.BinaryFormatCode, id[:], &got); err != nil || got != id {
		t.Fatalf("binary scan: %v, %v; want %v", got, err, id)
	}
	var nullable *uuid.UUID
	if err := m.Scan(pgtype.UUIDOID, pgtype.BinaryFormatCode, id[:], &nullable); err != nil || nullable == nil || *nullable != id {
		t.Fatalf("binary scan into a pointer: %v, %v", nullable, err)
	}
	if err := m.Scan(pgtype.UUIDOID, pgtype.BinaryFormatCode, nil, &nullable); err != nil || nullable != nil {
		t.Fatalf("NULL must scan as nil: %v, %v", nullable, err)
	}
	if err := m.Scan(pgtype.UUIDOID, pgtype.TextFormatCode, []byte(id.String()), &got); err != nil || got != id {
		t.Fatalf("text scan: %v, %v", got, err)
	}

	// The detour allocates the text, an error and the parsed value on
	// every encoding; the direct plan boxes the 16 bytes (twice, with the
	// argument itself).
	plain := pgtype.NewMap()
	encode := func(m *pgtype.Map) float64 {
		buf := make([]byte, 0, 64)
		return testing.AllocsPerRun(100, func() {
			if _, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id, buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	direct, detour := encode(m), encode(plain)
	if direct > 2 || direct*5 > detour {
		t.Fatalf("allocations per encoding: %v with registerUUID, %v without", direct, detour)
	}
}
