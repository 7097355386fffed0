package broker

// Unit tests of the parsing helpers; they need no broker.

import (
	"net/http"
	"net/url"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	cases := []struct {
		header string
		scheme string
		errorP string
	}{
		{`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`, "DPoP", "use_dpop_nonce"},
		{`dpop error=use_dpop_nonce`, "dpop", "use_dpop_nonce"},
		{`Bearer realm="x", DPoP algs="ES256 PS256", error="use_dpop_nonce"`, "DPoP", "use_dpop_nonce"},
		{`Negotiate abc==, DPoP error="invalid_token", error_description="a \"quoted\" word"`, "DPoP", "invalid_token"},
		{`DPoP   ERROR = "use_dpop_nonce"`, "DPoP", "use_dpop_nonce"},
	}
	for _, c := range cases {
		var found *challenge
		for _, ch := range parseChallenges(c.header) {
			if ch.scheme == c.scheme {
				found = ch
			}
		}
		if found == nil || found.params["error"] != c.errorP {
			t.Errorf("%s: got %+v, want scheme %s with error %q", c.header, found, c.scheme, c.errorP)
		}
	}
	chs := parseChallenges(`Bearer realm="a,b", error="x", DPoP error="y"`)
	if len(chs) != 2 || chs[0].params["realm"] != "a,b" || chs[0].params["error"] != "x" || chs[1].params["error"] != "y" {
		t.Errorf("two challenges: %+v %+v", chs[0], chs[1])
	}
	for _, junk := range []string{"", ",,,", `="`, `DPoP error="unterminated`, "==="} {
		parseChallenges(junk) // must not panic
	}
}

func TestNonceChallenge(t *testing.T) {
	resp := func(code int, www, nonce string) *http.Response {
		h := http.Header{}
		if www != "" {
			h.Set("WWW-Authenticate", www)
		}
		if nonce != "" {
			h.Set("DPoP-Nonce", nonce)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	if n, ok := nonceChallenge(resp(401, `DPoP error="use_dpop_nonce"`, "n1")); !ok || n != "n1" {
		t.Error("401 use_dpop_nonce with a nonce is a challenge")
	}
	if _, ok := nonceChallenge(resp(400, `DPoP error="use_dpop_nonce"`, "n1")); !ok {
		t.Error("400 use_dpop_nonce with a nonce is a challenge")
	}
	for _, r := range []*http.Response{
		resp(401, `DPoP error="use_dpop_nonce"`, ""),
		resp(401, `DPoP error="invalid_token"`, "n1"),
		resp(401, `Bearer error="use_dpop_nonce"`, "n1"),
		resp(403, `DPoP error="use_dpop_nonce"`, "n1"),
		resp(200, "", "n1"),
	} {
		if _, ok := nonceChallenge(r); ok {
			t.Errorf("%d %v is no challenge", r.StatusCode, r.Header)
		}
	}
}

func TestOriginOf(t *testing.T) {
	for raw, want := range map[string]string{
		"https://API.example.no/a/b?c": "https://api.example.no",
		"https://api.example.no:443/":  "https://api.example.no",
		"http://api.example.no:80/x":   "http://api.example.no",
		"https://api.example.no:8443":  "https://api.example.no:8443",
		"http://127.0.0.1:4000/demo":   "http://127.0.0.1:4000",
		"https://[::1]:443/":           "https://[::1]",
	} {
		u, _ := url.Parse(raw)
		if got := originOf(u); got != want {
			t.Errorf("originOf(%s) = %s, want %s", raw, got, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:50051": true, "127.1.2.3:1": true, "localhost:50051": true, "[::1]:50051": true,
		"dns:///localhost:50051": true, "unix:///run/broker.sock": true, "passthrough:///127.0.0.1:1": true,
		"broker:50051": false, "10.0.0.1:50051": false, "dns:///broker.example:443": false,
		"localhost.evil.example:1": false, "[::2]:1": false,
	} {
		if got := IsLoopback(target); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", target, got, want)
		}
	}
}

func TestInsufficientChallenge(t *testing.T) {
	resp := func(code int, www ...string) *http.Response {
		h := http.Header{}
		for _, v := range www {
			h.Add("WWW-Authenticate", v)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	for _, r := range []*http.Response{
		resp(403, `DPoP error="insufficient_authorization_details"`),
		resp(403, `Bearer error="insufficient_authorization_details", error_description="attest"`),
		resp(403, `Basic realm="x"`, `dpop algs="ES256", error=insufficient_authorization_details`),
	} {
		if insufficientChallenge(r) == nil {
			t.Errorf("%v is an insufficient_authorization_details refusal", r.Header)
		}
	}
	for _, r := range []*http.Response{
		resp(403),
		resp(403, `DPoP error="insufficient_scope"`),
		resp(403, `Basic error="insufficient_authorization_details"`),
		resp(401, `DPoP error="insufficient_authorization_details"`),
		resp(400, `Bearer error="insufficient_authorization_details"`),
	} {
		if insufficientChallenge(r) != nil {
			t.Errorf("%d %v is no insufficient_authorization_details refusal", r.StatusCode, r.Header)
		}
	}
}
