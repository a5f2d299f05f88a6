// The DER form of the extension value (DESIGN 3.3, IMPLICIT TAGS): a strict decoder on
// cryptobyte and the canonical encoder that the decoder compares its input against.

package delegation

import (
	"bytes"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

var (
	tagValueLimit = asn1.Tag(0).ContextSpecific().Constructed()
	tagApproval   = asn1.Tag(1).ContextSpecific().Constructed()
	tagChain      = asn1.Tag(2).ContextSpecific().Constructed()
)

// ParseDER decodes and checks an extension value (the OCTET STRING's content). It never panics.
//
// It fails with ErrTooLarge over 64 KiB, ErrMalformed for bad or trailing DER, ErrVersion for a
// version other than 1, ErrLimit for values outside DESIGN 3.3, and ErrNonCanonical when the
// input is not the one DER encoding of the value it decodes to.
func ParseDER(der []byte) (*Delegation, error) {
	if len(der) > MaxDERLen {
		return nil, ErrTooLarge
	}
	d, err := decode(der)
	if err != nil {
		return nil, err
	}
	if err := d.Check(); err != nil {
		return nil, err
	}
	// DER has one encoding per value: anything the reader tolerated re-encodes differently.
	again, err := d.MarshalDER()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, der) {
		return nil, ErrNonCanonical
	}
	return d, nil
}

// MarshalDER encodes a checked delegation as the DER extension value (times in whole seconds).
//
// It fails when Check fails or a time is outside the years 1970 to 9999.
func (d *Delegation) MarshalDER() ([]byte, error) {
	if err := d.Check(); err != nil {
		return nil, err
	}
	for _, t := range d.times() {
		if y := t.UTC().Year(); y < 1970 || y > 9999 {
			return nil, fmt.Errorf("%w: time %v is out of range", ErrLimit, t)
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(Version)
		addPrincipal(b, d.Principal)
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addString(b, asn1.UTF8String, d.Task.ID)
			addString(b, asn1.UTF8String, d.Task.Purpose)
			addTime(b, d.Task.Deadline)
			b.AddASN1Uint64(uint64(d.Task.Depth))
			b.AddASN1Uint64(uint64(d.Task.MaxDepth))
		})
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, a := range d.Actions {
				addString(b, asn1.UTF8String, a)
			}
		})
		if v := d.ValueLimit; v != nil {
			b.AddASN1(tagValueLimit, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(v.AmountMinor)
				addString(b, asn1.PrintableString, v.Currency)
			})
		}
		if a := d.Approval; a != nil {
			b.AddASN1(tagApproval, func(b *cryptobyte.Builder) {
				addString(b, asn1.UTF8String, a.Approver)
				addTime(b, a.ApprovedAt)
			})
		}
		if len(d.Chain) > 0 {
			b.AddASN1(tagChain, func(b *cryptobyte.Builder) {
				for _, l := range d.Chain {
					b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
						addPrincipal(b, l.Principal)
						addString(b, asn1.UTF8String, l.TaskID)
						addString(b, asn1.IA5String, l.Actor)
					})
				}
			})
		}
	})
	return b.Bytes()
}

func (d *Delegation) times() []time.Time {
	t := []time.Time{d.Task.Deadline}
	if d.Approval != nil {
		t = append(t, d.Approval.ApprovedAt)
	}
	return t
}

func addPrincipal(b *cryptobyte.Builder, p Principal) {
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(int64(p.Kind))
		addString(b, asn1.UTF8String, p.ID)
	})
}

func addString(b *cryptobyte.Builder, tag asn1.Tag, text string) {
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(text)) })
}

func addTime(b *cryptobyte.Builder, t time.Time) {
	addString(b, asn1.GeneralizedTime, t.UTC().Format("20060102150405Z"))
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// decode reads the structure; it refuses non-minimal lengths and integers, indefinite
// lengths, wrong tags and trailing bytes at every level.
func decode(der []byte) (*Delegation, error) {
	input := cryptobyte.String(der)
	var seq cryptobyte.String
	if !input.ReadASN1(&seq, asn1.SEQUENCE) || !input.Empty() {
		return nil, malformed("expected one SEQUENCE and nothing after it")
	}
	var version int64
	if !seq.ReadASN1Integer(&version) {
		return nil, malformed("version")
	}
	if version != Version {
		return nil, fmt.Errorf("%w %d", ErrVersion, version)
	}
	d := &Delegation{Actions: []string{}}
	var err error
	if d.Principal, err = readPrincipal(&seq); err != nil {
		return nil, err
	}
	if d.Task, err = readTask(&seq); err != nil {
		return nil, err
	}
	var actions cryptobyte.String
	if !seq.ReadASN1(&actions, asn1.SEQUENCE) {
		return nil, malformed("actions")
	}
	for !actions.Empty() {
		a, err := readString(&actions, asn1.UTF8String, "action")
		if err != nil {
			return nil, err
		}
		d.Actions = append(d.Actions, a)
	}
	if seq.PeekASN1Tag(tagValueLimit) {
		var v cryptobyte.String
		limit := &ValueLimit{}
		seq.ReadASN1(&v, tagValueLimit)
		if !v.ReadASN1Integer(&limit.AmountMinor) {
			return nil, malformed("value limit amount")
		}
		if limit.Currency, err = readString(&v, asn1.PrintableString, "currency"); err != nil {
			return nil, err
		}
		if !v.Empty() {
			return nil, malformed("trailing bytes in the value limit")
		}
		d.ValueLimit = limit
	}
	if seq.PeekASN1Tag(tagApproval) {
		var a cryptobyte.String
		approval := &Approval{}
		seq.ReadASN1(&a, tagApproval)
		if approval.Approver, err = readString(&a, asn1.UTF8String, "approver"); err != nil {
			return nil, err
		}
		if approval.ApprovedAt, err = readTime(&a); err != nil {
			return nil, err
		}
		if !a.Empty() {
			return nil, malformed("trailing bytes in the approval")
		}
		d.Approval = approval
	}
	if seq.PeekASN1Tag(tagChain) {
		var c cryptobyte.String
		seq.ReadASN1(&c, tagChain)
		if c.Empty() {
			return nil, fmt.Errorf("%w: chain is present but empty", ErrLimit)
		}
		for !c.Empty() {
			l, err := readLink(&c)
			if err != nil {
				return nil, err
			}
			d.Chain = append(d.Chain, l)
		}
	}
	if !seq.Empty() {
		return nil, malformed("unexpected or out-of-order fields after the actions")
	}
	return d, nil
}

func readPrincipal(s *cryptobyte.String) (Principal, error) {
	var p cryptobyte.String
	var kind int
	if !s.ReadASN1(&p, asn1.SEQUENCE) || !p.ReadASN1Enum(&kind) {
		return Principal{}, malformed("principal")
	}
	if kind < int(User) || kind > int(Workload) {
		return Principal{}, malformed(fmt.Sprintf("principal kind %d", kind))
	}
	id, err := readString(&p, asn1.UTF8String, "principal id")
	if err != nil {
		return Principal{}, err
	}
	if !p.Empty() {
		return Principal{}, malformed("trailing bytes in the principal")
	}
	return Principal{Kind: PrincipalKind(kind), ID: id}, nil
}

func readTask(s *cryptobyte.String) (TaskInfo, error) {
	var t cryptobyte.String
	if !s.ReadASN1(&t, asn1.SEQUENCE) {
		return TaskInfo{}, malformed("task")
	}
	var task TaskInfo
	var err error
	if task.ID, err = readString(&t, asn1.UTF8String, "task id"); err != nil {
		return task, err
	}
	if task.Purpose, err = readString(&t, asn1.UTF8String, "purpose"); err != nil {
		return task, err
	}
	if task.Deadline, err = readTime(&t); err != nil {
		return task, err
	}
	var depth, maxDepth int64
	if !t.ReadASN1Integer(&depth) || !t.ReadASN1Integer(&maxDepth) || !t.Empty() {
		return task, malformed("task depth, max depth or trailing bytes")
	}
	if depth < 0 || depth > 255 || maxDepth < 0 || maxDepth > 255 {
		return task, malformed("depth and max depth are INTEGER (0..255)")
	}
	task.Depth, task.MaxDepth = uint8(depth), uint8(maxDepth)
	return task, nil
}

func readLink(s *cryptobyte.String) (Link, error) {
	var l cryptobyte.String
	if !s.ReadASN1(&l, asn1.SEQUENCE) {
		return Link{}, malformed("chain link")
	}
	p, err := readPrincipal(&l)
	if err != nil {
		return Link{}, err
	}
	link := Link{Principal: p}
	if link.TaskID, err = readString(&l, asn1.UTF8String, "link task id"); err != nil {
		return link, err
	}
	if link.Actor, err = readString(&l, asn1.IA5String, "link actor"); err != nil {
		return link, err
	}
	if !l.Empty() {
		return link, malformed("trailing bytes in a chain link")
	}
	return link, nil
}

// readString reads a string of the given universal type and checks its character set.
func readString(s *cryptobyte.String, tag asn1.Tag, what string) (string, error) {
	var v cryptobyte.String
	if !s.ReadASN1(&v, tag) {
		return "", malformed(what)
	}
	text := string(v)
	ok := true
	switch tag {
	case asn1.UTF8String:
		ok = utf8.ValidString(text)
	case asn1.IA5String:
		for i := 0; i < len(text); i++ {
			ok = ok && text[i] < 0x80
		}
	case asn1.PrintableString:
		for i := 0; i < len(text); i++ {
			ok = ok && printable(text[i])
		}
	}
	if !ok {
		return "", malformed(what + ": bad characters for its string type")
	}
	return text, nil
}

func printable(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		bytes.IndexByte([]byte(" '()+,-./:=?"), c) >= 0
}

// readTime reads a GeneralizedTime of exactly `YYYYMMDDHHMMSSZ`, a valid UTC date from 1970.
func readTime(s *cryptobyte.String) (time.Time, error) {
	var v cryptobyte.String
	if !s.ReadASN1(&v, asn1.GeneralizedTime) {
		return time.Time{}, malformed("time: expected a GeneralizedTime")
	}
	text := string(v)
	if len(text) != 15 || text[14] != 'Z' || !allDigits(text[:14]) {
		return time.Time{}, malformed(fmt.Sprintf("time %q is not YYYYMMDDHHMMSSZ", text))
	}
	t, err := time.Parse("20060102150405Z", text)
	if err != nil || t.Year() < 1970 || t.Format("20060102150405Z") != text {
		return time.Time{}, malformed(fmt.Sprintf("time %q is not a valid UTC time", text))
	}
	return t, nil
}
