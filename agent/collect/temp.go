package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fleetwire/fleetwire/protocol"
)

// tempCollector reads Linux thermal zones (Documentation/driver-api/thermal/
// sysfs-api.rst): <dir>/thermal_zoneN/temp holds millidegrees Celsius and
// <dir>/thermal_zoneN/type the sensor's name.
type tempCollector struct {
	dir     string
	zones   []thermalZone
	scanned bool
	// buf is reused for every read: a temp file holds one short integer.
	buf [64]byte
}

type thermalZone struct {
	path string            // the temp file
	name string            // tag value
	tags map[string]string // {"zone": name}, shared by every collection
}

func newTemp(dir string) *tempCollector { return &tempCollector{dir: dir} }

func (t *tempCollector) Name() string { return NameTemp }

// Collect reports every zone it can read. No thermal directory (a VM) or no
// zones is not an error: there is just nothing to report. Zones are found
// once and found again when one disappears.
func (t *tempCollector) Collect(ctx context.Context) ([]protocol.Point, error) {
	if !t.scanned {
		if err := t.scan(); err != nil {
			return nil, err
		}
	}
	pts := make([]protocol.Point, 0, len(t.zones))
	var errs []error
	for _, z := range t.zones {
		if err := ctx.Err(); err != nil {
			return pts, fmt.Errorf("temp: %w", err)
		}
		c, err := t.read(z.path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				t.scanned = false
			}
			errs = append(errs, fmt.Errorf("temp %s: %w", z.name, err))
			continue
		}
		pts = append(pts, protocol.Point{Name: "temp.celsius", Value: c, Tags: z.tags})
	}
	return pts, errors.Join(errs...)
}

// scan lists the zones. Two zones of the same type (a PC's "acpitz" twice)
// would be one series overwriting itself, so such names get the zone number
// appended: "acpitz-0", "acpitz-1".
func (t *tempCollector) scan() error {
	dirs, err := filepath.Glob(filepath.Join(t.dir, "thermal_zone*"))
	if err != nil {
		return fmt.Errorf("temp: %w", err)
	}
	zones := make([]thermalZone, 0, len(dirs))
	count := make(map[string]int, len(dirs))
	for _, d := range dirs {
		name := t.zoneType(d)
		count[name]++
		zones = append(zones, thermalZone{path: filepath.Join(d, "temp"), name: name})
	}
	for i, z := range zones {
		if count[z.name] > 1 {
			zones[i].name = z.name + "-" + strings.TrimPrefix(filepath.Base(filepath.Dir(z.path)), "thermal_zone")
		}
		zones[i].tags = map[string]string{"zone": zones[i].name}
	}
	t.zones, t.scanned = zones, true
	return nil
}

// zoneType is the zone's type, or its directory name when the type is
// unreadable or not a valid tag value.
func (t *tempCollector) zoneType(dir string) string {
	b, err := t.readFile(filepath.Join(dir, "type"))
	if name := string(bytes.TrimSpace(b)); err == nil && validTagValue(name) == nil {
		return name
	}
	return filepath.Base(dir)
}

// read returns the zone's temperature in degrees Celsius.
func (t *tempCollector) read(path string) (float64, error) {
	b, err := t.readFile(path)
	if err != nil {
		return 0, err
	}
	milli, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse: %w", err)
	}
	return float64(milli) / 1000, nil
}

// readFile reads at most len(t.buf) bytes of a small sysfs file into t.buf.
// The result is valid until the next call.
func (t *tempCollector) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, t.buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return t.buf[:n], nil
}
