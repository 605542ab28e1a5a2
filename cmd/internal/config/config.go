// Package config loads the typed configuration of fleethub and fleetagent
// from a YAML file, environment variables and command-line flags, and prints
// the effective result for --print-config.
//
// Keys are the `mapstructure` tags of the config struct joined with dots:
// field Influx.URL tagged `mapstructure:"influx"` / `mapstructure:"url"` is
// the key influx.url. The same key names the value everywhere:
//
//	file:  influx: {url: ...}           (YAML, nested)
//	env:   FLEETHUB_INFLUX_URL           (prefix, then the key upper-cased with "." -> "_")
//	flag:  --influx.url                  (the flag name is the key, verbatim)
//
// Viper stays inside this package; callers only see their own struct.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Load fills out, a pointer to a config struct that already holds the
// defaults, from (in increasing precedence) the YAML file at path, the
// environment and the flags explicitly set on fs.
//
//   - path == "" means no file. A named file that is missing or unreadable is
//     an error, as is any key in it that the struct does not have.
//   - Environment: envPrefix + "_" + the key upper-cased with dots replaced by
//     underscores (envPrefix "FLEETHUB" or "FLEETHUB_": influx.url is read from
//     FLEETHUB_INFLUX_URL). Every key of the struct is bound, whether or not
//     the file mentions it. Empty variables are ignored. An empty envPrefix
//     disables the environment. Lists are comma-separated.
//   - Flags: a flag whose name equals a key (--influx.url, --data_dir) sets
//     that key when it was given on the command line; its default is never
//     used. Flags that are not keys (--config, --version) are ignored.
//
// Durations decode from "10s"; ByteSize fields from "64MiB", "1GB" or a
// plain number of bytes. Lists and maps named by a source replace the
// default instead of merging into it.
func Load(path, envPrefix string, fs *pflag.FlagSet, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: Load wants a non-nil pointer to a struct, got %T", out)
	}
	keys := collectKeys(rv.Elem().Type())
	v := viper.New()
	v.SetConfigType("yaml")
	if path != "" {
		if err := readFile(v, path, keys); err != nil {
			return err
		}
	}
	if envPrefix != "" {
		bindEnv(v, envPrefix, keys)
	}
	if err := bindFlags(v, fs, keys); err != nil {
		return err
	}
	err := v.UnmarshalExact(out,
		viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
			byteSizeHook,
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
		)),
		// Without ZeroFields a list from the file would be decoded into the
		// default list element by element, leaving default fields behind in
		// structs the user wrote out in full.
		func(c *mapstructure.DecoderConfig) { c.ZeroFields = true },
	)
	if err != nil {
		return decodeErrors(err)
	}
	return nil
}

// decodeErrors rewrites mapstructure's error tree as one line per problem,
// each naming the key: "config: spool.max_bytes: byte size ...".
func decodeErrors(err error) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if de, ok := e.(*mapstructure.DecodeError); ok {
			inner := de.Unwrap().Error()
			// mapstructure's wording for ErrorUnused inside lists of structs,
			// which the file check in readFile cannot see into.
			if keys, ok := strings.CutPrefix(inner, "has invalid keys: "); ok {
				for _, k := range strings.Split(keys, ", ") {
					out = append(out, fmt.Errorf("config: unknown key %q", de.Name()+"."+k))
				}
				return
			}
			out = append(out, fmt.Errorf("config: %s: %w", de.Name(), de.Unwrap()))
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
			return
		}
		if u := errors.Unwrap(e); u != nil && isJoin(u) {
			walk(u) // mapstructure's "decoding failed due to..." wrapper
			return
		}
		out = append(out, fmt.Errorf("config: %w", e))
	}
	walk(err)
	return errors.Join(out...)
}

func isJoin(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

// durationHook decodes "10s"; unlike mapstructure's own hook, its error
// keeps the offending value.
func durationHook(_, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || to != durationType {
		return data, nil
	}
	return time.ParseDuration(strings.TrimSpace(s))
}

// readFile reads the YAML file into v and rejects keys the struct lacks.
func readFile(v *viper.Viper, path string, keys keySet) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	if err := v.ReadConfig(f); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	// At this point v holds only the file, so AllKeys is the file's keys.
	var unknown []string
	for _, k := range v.AllKeys() {
		if !keys.accepts(k) {
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	switch len(unknown) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("config file %s: unknown key %s", path, unknown[0])
	default:
		slices.Sort(unknown)
		return fmt.Errorf("config file %s: unknown keys %s", path, strings.Join(unknown, ", "))
	}
}

// bindEnv binds every key explicitly: viper's AutomaticEnv only consults
// the environment for keys it already knows from another source, so a
// nested key absent from the file would otherwise never be read.
func bindEnv(v *viper.Viper, prefix string, keys keySet) {
	prefix = strings.ToUpper(strings.TrimSuffix(prefix, "_")) + "_"
	for _, k := range keys.sorted() {
		// BindEnv with an explicit name cannot fail.
		_ = v.BindEnv(k, EnvName(prefix, k))
	}
}

// EnvName returns the environment variable that sets key under prefix:
// EnvName("FLEETHUB", "influx.url") is "FLEETHUB_INFLUX_URL".
func EnvName(prefix, key string) string {
	prefix = strings.ToUpper(strings.TrimSuffix(prefix, "_"))
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// bindFlags binds the flags that were set and whose name is a key.
func bindFlags(v *viper.Viper, fs *pflag.FlagSet, keys keySet) error {
	if fs == nil {
		return nil
	}
	var err error
	fs.Visit(func(f *pflag.Flag) { // Visit walks only flags set on the command line.
		if _, ok := keys[f.Name]; ok && err == nil {
			if e := v.BindPFlag(f.Name, f); e != nil {
				err = fmt.Errorf("config: flag --%s: %w", f.Name, e)
			}
		}
	})
	return err
}

// keySet maps every leaf key of a config struct to whether it is a map,
// whose own sub-keys a file may name freely.
type keySet map[string]bool

// accepts reports whether a key read from a file belongs to the struct: a
// leaf, a struct holding leaves (e.g. an empty `hub:`), or anything below a
// leaf (map entries; for other leaf types decoding reports the type error).
func (s keySet) accepts(key string) bool {
	if _, ok := s[key]; ok {
		return true
	}
	for i := range len(key) {
		if key[i] == '.' {
			if _, ok := s[key[:i]]; ok {
				return true
			}
		}
	}
	for k := range s {
		if strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

func (s keySet) sorted() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

// collectKeys walks the struct's fields by their mapstructure names.
func collectKeys(t reflect.Type) keySet {
	s := keySet{}
	walkFields(t, "", func(key string, ft reflect.Type) {
		s[key] = ft.Kind() == reflect.Map
	})
	return s
}

// walkFields calls leaf for every field that is not itself a struct of
// more keys. Structs nest (prefix "a.b"); `,squash` fields flatten into
// their parent as mapstructure does.
func walkFields(t reflect.Type, prefix string, leaf func(key string, t reflect.Type)) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, squash, ok := fieldKey(f)
		if !ok {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if squash && ft.Kind() == reflect.Struct {
			walkFields(ft, prefix, leaf)
			continue
		}
		key := prefix + name
		if isNested(ft) {
			walkFields(ft, key+".", leaf)
			continue
		}
		leaf(key, ft)
	}
}

// isNested reports whether t is a struct of further keys rather than one
// value (time.Time and other text-decoded structs are values).
func isNested(t reflect.Type) bool {
	if t.Kind() != reflect.Struct || t == durationType {
		return false
	}
	return !reflect.PointerTo(t).Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]())
}

// fieldKey returns the key of a field (its mapstructure name, or its
// lower-cased Go name without a tag), whether it squashes, and false for
// fields that take no part: unexported or tagged "-".
func fieldKey(f reflect.StructField) (name string, squash, ok bool) {
	if !f.IsExported() {
		return "", false, false
	}
	tag := f.Tag.Get("mapstructure")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false, false
	}
	squash = f.Anonymous && slices.Contains(strings.Split(opts, ","), "squash")
	if name == "" {
		name = f.Name
	}
	return strings.ToLower(name), squash, true
}

// errNotStruct is returned by Print for values that are not structs.
var errNotStruct = errors.New("config: Print wants a struct or a pointer to one")
