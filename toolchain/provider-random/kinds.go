package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
)

const (
	lowerChars   = "abcdefghijklmnopqrstuvwxyz"
	upperChars   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	numericChars = "0123456789"
	// The official provider's default special characters.
	specialChars = "!@#$%&*()-_=+[]{}<>:?"
)

func setDefault(in resource.PropertyMap, key string, v resource.PropertyValue) {
	if _, ok := in[resource.PropertyKey(key)]; !ok {
		in[resource.PropertyKey(key)] = v
	}
}

func number(in resource.PropertyMap, key string) (float64, bool) {
	v, ok := in[resource.PropertyKey(key)]
	if !ok {
		return 0, false
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsNumber() {
		return 0, false
	}
	return v.NumberValue(), true
}

func boolean(in resource.PropertyMap, key string) bool {
	v, ok := in[resource.PropertyKey(key)]
	return ok && v.IsBool() && v.BoolValue()
}

func str(in resource.PropertyMap, key string) string {
	v, ok := in[resource.PropertyKey(key)]
	if !ok || !v.IsString() {
		return ""
	}
	return v.StringValue()
}

func failure(prop, reason string) plugin.CheckFailure {
	return plugin.CheckFailure{Property: resource.PropertyKey(prop), Reason: reason}
}

func wholeAtLeast(in resource.PropertyMap, key string, min float64, required bool) []plugin.CheckFailure {
	n, ok := number(in, key)
	if !ok {
		if required {
			return []plugin.CheckFailure{failure(key, key+" is required and must be a number")}
		}
		return nil
	}
	if n != float64(int64(n)) || n < min {
		return []plugin.CheckFailure{failure(key, fmt.Sprintf("%s must be a whole number of at least %v, got %v", key, min, n))}
	}
	return nil
}

func passwordKind(secret bool) kind {
	return kind{
		defaults: func(in resource.PropertyMap) {
			for _, key := range []string{"lower", "upper", "special"} {
				setDefault(in, key, resource.NewBoolProperty(true))
			}
			// "number" is the deprecated name of "numeric"; keep the two consistent.
			if v, ok := in["number"]; ok {
				setDefault(in, "numeric", v)
			}
			setDefault(in, "numeric", resource.NewBoolProperty(true))
			setDefault(in, "number", in["numeric"])
			for _, key := range []string{"minLower", "minUpper", "minNumeric", "minSpecial"} {
				setDefault(in, key, resource.NewNumberProperty(0))
			}
		},
		validate: func(in resource.PropertyMap) []plugin.CheckFailure {
			failures := wholeAtLeast(in, "length", 1, true)
			var minimums float64
			for _, key := range []string{"minLower", "minUpper", "minNumeric", "minSpecial"} {
				failures = append(failures, wholeAtLeast(in, key, 0, false)...)
				n, _ := number(in, key)
				minimums += n
			}
			if length, ok := number(in, "length"); ok && len(failures) == 0 && minimums > length {
				failures = append(failures, failure("length",
					fmt.Sprintf("length (%v) must be at least the sum of the minimums (%v)", length, minimums)))
			}
			if len(charset(in)) == 0 {
				failures = append(failures, failure("lower", "at least one of lower, upper, numeric and special must be true"))
			}
			return failures
		},
		generate: func(in resource.PropertyMap) (resource.PropertyMap, resource.ID, error) {
			result, err := generatePassword(in)
			if err != nil {
				return nil, "", err
			}
			out := in.Copy()
			if !secret {
				out["result"] = resource.NewStringProperty(result)
				return out, resource.ID(result), nil
			}
			hash, err := bcrypt.GenerateFromPassword([]byte(result), bcrypt.DefaultCost)
			if err != nil {
				return nil, "", err
			}
			out["result"] = resource.MakeSecret(resource.NewStringProperty(result))
			out["bcryptHash"] = resource.MakeSecret(resource.NewStringProperty(string(hash)))
			// The official provider gives passwords the ID "none" so the value never shows as an ID.
			return out, "none", nil
		},
		computed: map[bool][]string{true: {"result", "bcryptHash"}, false: {"result"}}[secret],
	}
}

func charset(in resource.PropertyMap) string {
	var b strings.Builder
	if boolean(in, "lower") {
		b.WriteString(lowerChars)
	}
	if boolean(in, "upper") {
		b.WriteString(upperChars)
	}
	if boolean(in, "numeric") {
		b.WriteString(numericChars)
	}
	if boolean(in, "special") {
		special := specialChars
		if s := str(in, "overrideSpecial"); s != "" {
			special = s
		}
		b.WriteString(special)
	}
	return b.String()
}

func randomIndex(n int) (int, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0, err
	}
	return int(v.Int64()), nil
}

func pick(set string, count int, into *[]byte) error {
	for i := 0; i < count; i++ {
		idx, err := randomIndex(len(set))
		if err != nil {
			return err
		}
		*into = append(*into, set[idx])
	}
	return nil
}

// generatePassword first satisfies every minimum, fills the rest from the whole character set,
// then shuffles, so the required characters do not sit at predictable positions.
func generatePassword(in resource.PropertyMap) (string, error) {
	length, _ := number(in, "length")
	special := specialChars
	if s := str(in, "overrideSpecial"); s != "" {
		special = s
	}
	var out []byte
	for _, req := range []struct {
		key, set string
	}{{"minLower", lowerChars}, {"minUpper", upperChars}, {"minNumeric", numericChars}, {"minSpecial", special}} {
		n, _ := number(in, req.key)
		if err := pick(req.set, int(n), &out); err != nil {
			return "", err
		}
	}
	if err := pick(charset(in), int(length)-len(out), &out); err != nil {
		return "", err
	}
	for i := len(out) - 1; i > 0; i-- {
		j, err := randomIndex(i + 1)
		if err != nil {
			return "", err
		}
		out[i], out[j] = out[j], out[i]
	}
	return string(out), nil
}

func randomBytes(n int) ([]byte, error) {
	buf := make([]byte, n)
	_, err := rand.Read(buf)
	return buf, err
}

func bytesKind() kind {
	return kind{
		defaults: func(resource.PropertyMap) {},
		validate: func(in resource.PropertyMap) []plugin.CheckFailure { return wholeAtLeast(in, "length", 1, true) },
		generate: func(in resource.PropertyMap) (resource.PropertyMap, resource.ID, error) {
			n, _ := number(in, "length")
			buf, err := randomBytes(int(n))
			if err != nil {
				return nil, "", err
			}
			out := in.Copy()
			out["base64"] = resource.MakeSecret(resource.NewStringProperty(base64.StdEncoding.EncodeToString(buf)))
			out["hex"] = resource.MakeSecret(resource.NewStringProperty(hex.EncodeToString(buf)))
			return out, "none", nil
		},
		computed: []string{"base64", "hex"},
	}
}

func idKind() kind {
	return kind{
		defaults: func(resource.PropertyMap) {},
		validate: func(in resource.PropertyMap) []plugin.CheckFailure { return wholeAtLeast(in, "byteLength", 1, true) },
		generate: func(in resource.PropertyMap) (resource.PropertyMap, resource.ID, error) {
			n, _ := number(in, "byteLength")
			buf, err := randomBytes(int(n))
			if err != nil {
				return nil, "", err
			}
			prefix := str(in, "prefix")
			out := in.Copy()
			b64url := base64.RawURLEncoding.EncodeToString(buf)
			out["b64Url"] = resource.NewStringProperty(prefix + b64url)
			out["b64Std"] = resource.NewStringProperty(prefix + base64.StdEncoding.EncodeToString(buf))
			out["hex"] = resource.NewStringProperty(prefix + hex.EncodeToString(buf))
			out["dec"] = resource.NewStringProperty(prefix + new(big.Int).SetBytes(buf).String())
			return out, resource.ID(b64url), nil
		},
		computed: []string{"b64Url", "b64Std", "hex", "dec"},
	}
}

func integerKind() kind {
	return kind{
		defaults: func(resource.PropertyMap) {},
		validate: func(in resource.PropertyMap) []plugin.CheckFailure {
			min, okMin := number(in, "min")
			max, okMax := number(in, "max")
			switch {
			case !okMin:
				return []plugin.CheckFailure{failure("min", "min is required and must be a number")}
			case !okMax:
				return []plugin.CheckFailure{failure("max", "max is required and must be a number")}
			case max < min:
				return []plugin.CheckFailure{failure("max", fmt.Sprintf("max (%v) must be at least min (%v)", max, min))}
			}
			return nil
		},
		generate: func(in resource.PropertyMap) (resource.PropertyMap, resource.ID, error) {
			min, _ := number(in, "min")
			max, _ := number(in, "max")
			idx, err := randomIndex(int(max-min) + 1)
			if err != nil {
				return nil, "", err
			}
			result := int(min) + idx
			out := in.Copy()
			out["result"] = resource.NewNumberProperty(float64(result))
			return out, resource.ID(fmt.Sprint(result)), nil
		},
		computed: []string{"result"},
	}
}

func uuidKind() kind {
	return kind{
		defaults: func(resource.PropertyMap) {},
		validate: func(resource.PropertyMap) []plugin.CheckFailure { return nil },
		generate: func(in resource.PropertyMap) (resource.PropertyMap, resource.ID, error) {
			buf, err := randomBytes(16)
			if err != nil {
				return nil, "", err
			}
			buf[6] = (buf[6] & 0x0f) | 0x40 // version 4
			buf[8] = (buf[8] & 0x3f) | 0x80 // RFC 4122 variant
			h := hex.EncodeToString(buf)
			id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
			out := in.Copy()
			out["result"] = resource.NewStringProperty(id)
			return out, resource.ID(id), nil
		},
		computed: []string{"result"},
	}
}
