// Package rowfile writes flat rows of a struct type as Parquet, CSV or JSON
// lines, the three formats analysts load into DuckDB or pandas. The calls
// export and the events export write the same formats the same way; keeping
// one writer means a column is written alike in both.
//
// A row type's exported fields are its columns, in order, named by their
// json tag (which the parquet tag must repeat). Fields are strings, bools,
// int32, int64, float64, time.Time, or pointers to those for nullable
// columns.
package rowfile

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Formats are the supported formats.
var Formats = []string{"parquet", "csv", "jsonl"}

// parquetBatch is how many rows are handed to the Parquet writer at a time.
const parquetBatch = 4096

// Columns are the column names of T, in order: its fields' json names.
func Columns[T any]() []string {
	t := reflect.TypeFor[T]()
	cols := make([]string, t.NumField())
	for i := range cols {
		cols[i] = strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
	}
	return cols
}

// Writer writes rows of T in one format. Close must be called to finish the
// file (Parquet writes its footer then).
type Writer[T any] struct {
	format  string
	parquet *parquet.GenericWriter[T]
	batch   []T
	csv     *csv.Writer
	fields  []string
	json    *json.Encoder
}

// New returns a Writer of format (one of Formats) to out; a CSV file starts
// with its header.
func New[T any](format string, out io.Writer) (*Writer[T], error) {
	if err := check(reflect.TypeFor[T]()); err != nil {
		return nil, err
	}
	w := &Writer[T]{format: format}
	switch format {
	case "parquet":
		w.parquet = parquet.NewGenericWriter[T](out, parquet.Compression(&parquet.Zstd))
	case "csv":
		w.csv = csv.NewWriter(out)
		if err := w.csv.Write(Columns[T]()); err != nil {
			return nil, fmt.Errorf("export csv: %w", err)
		}
	case "jsonl":
		w.json = json.NewEncoder(out)
		w.json.SetEscapeHTML(false)
	default:
		return nil, fmt.Errorf("export format %q: want parquet, csv or jsonl", format)
	}
	return w, nil
}

// Write writes one row (Parquet rows are buffered until Close or a full
// batch).
func (w *Writer[T]) Write(r *T) error {
	switch w.format {
	case "parquet":
		w.batch = append(w.batch, *r)
		if len(w.batch) < parquetBatch {
			return nil
		}
		return w.flushParquet()
	case "csv":
		v := reflect.ValueOf(r).Elem()
		w.fields = w.fields[:0]
		for i := range v.NumField() {
			w.fields = append(w.fields, csvField(v.Field(i)))
		}
		if err := w.csv.Write(w.fields); err != nil {
			return fmt.Errorf("export csv: %w", err)
		}
		return nil
	default:
		if err := w.json.Encode(r); err != nil {
			return fmt.Errorf("export jsonl: %w", err)
		}
		return nil
	}
}

// Close writes what is buffered and finishes the file.
func (w *Writer[T]) Close() error {
	switch w.format {
	case "parquet":
		if err := w.flushParquet(); err != nil {
			return err
		}
		if err := w.parquet.Close(); err != nil {
			return fmt.Errorf("export parquet: %w", err)
		}
	case "csv":
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return fmt.Errorf("export csv: %w", err)
		}
	}
	return nil
}

func (w *Writer[T]) flushParquet() error {
	if _, err := w.parquet.Write(w.batch); err != nil {
		return fmt.Errorf("export parquet: %w", err)
	}
	w.batch = w.batch[:0]
	return nil
}

// check refuses a row type with a field csvField cannot write, so that a
// mistake shows when the writer is made, not in the middle of a file.
func check(t reflect.Type) error {
	if t.Kind() != reflect.Struct {
		return fmt.Errorf("rowfile: row type %s is not a struct", t)
	}
	for i := range t.NumField() {
		f := t.Field(i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeFor[time.Time]():
		case ft.Kind() == reflect.String, ft.Kind() == reflect.Bool, ft.Kind() == reflect.Int32,
			ft.Kind() == reflect.Int64, ft.Kind() == reflect.Float64:
		default:
			return fmt.Errorf("rowfile: column %s of %s has type %s, which has no CSV form", f.Name, t, f.Type)
		}
	}
	return nil
}

// csvField is a column's CSV text: null is an empty field, times are RFC
// 3339 with nanoseconds.
func csvField(f reflect.Value) string {
	if f.Kind() == reflect.Pointer {
		if f.IsNil() {
			return ""
		}
		f = f.Elem()
	}
	switch x := f.Interface().(type) {
	case string:
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	panic(fmt.Sprintf("rowfile: no CSV form for %s", f.Type()))
}
