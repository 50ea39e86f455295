// A scenario run against dbroker with HashiCorp's official Vault Go client
// (github.com/hashicorp/vault/api), using only the library's normal methods,
// to prove that the client works against dbroker unchanged.
//
// VAULT_ADDR and VAULT_TOKEN come from the environment (api.DefaultConfig);
// the PostgreSQL connection to configure comes from flags. Stdout gets JSON
// lines, told apart by "event": "creds" when the credentials are issued,
// "waiting" when -wait is set (the caller checks the live credentials, then
// writes a line to stdin), and finally "summary", every step's values and
// ok/err. The exit code is non-zero when any step failed unexpectedly.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

type options struct {
	mount          string
	connectionURL  string
	dbUsername     string
	dbPassword     string
	usernamePrefix string
	wait           bool
	// With an unseal key, the scenario ends by sealing and unsealing through the client.
	unsealKey string
}

type scenario struct {
	opts    options
	client  *api.Client
	summary map[string]any
	out     *json.Encoder
	watcher *api.LifetimeWatcher
}

// stepFailed stops the scenario: the step that failed is in the summary.
type stepFailed struct{ name string }

func (e stepFailed) Error() string { return "step " + e.name + " failed" }

// step runs fn and records its values and ok/err under name.
func (s *scenario) step(name string, fn func() (map[string]any, error)) map[string]any {
	values, err := fn()
	if values == nil {
		values = map[string]any{}
	}
	values["ok"] = err == nil
	if err != nil {
		values["err"] = err.Error()
	}
	s.summary[name] = values
	if err != nil {
		panic(stepFailed{name})
	}
	return values
}

// responseError returns err as the client's *api.ResponseError, or an error saying it is not one.
func responseError(err error) (*api.ResponseError, error) {
	if err == nil {
		return nil, errors.New("expected an error response, the call succeeded")
	}
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return nil, fmt.Errorf("expected *api.ResponseError, got %T: %v", err, err)
	}
	return re, nil
}

func errorValues(re *api.ResponseError) map[string]any {
	return map[string]any{"status": re.StatusCode, "errors": re.Errors, "method": re.HTTPMethod, "raw_error": re.RawError}
}

func secretKeys(secret *api.Secret) ([]string, error) {
	if secret == nil || secret.Data == nil {
		return nil, errors.New("the list answered no data")
	}
	raw, ok := secret.Data["keys"].([]any)
	if !ok {
		return nil, fmt.Errorf("data.keys is %T, not a list", secret.Data["keys"])
	}
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		keys = append(keys, fmt.Sprint(k))
	}
	return keys, nil
}

func (s *scenario) emit(line map[string]any) {
	if err := s.out.Encode(line); err != nil {
		fmt.Fprintln(os.Stderr, "writing stdout:", err)
	}
}

// waitForCaller prints {"waiting": what, ...extra} and blocks until the caller
// writes a line (or closes stdin, or a minute passes).
func waitForCaller(s *scenario, what string, extra map[string]any) {
	line := map[string]any{"event": "waiting", "waiting": what}
	for k, v := range extra {
		line[k] = v
	}
	s.emit(line)
	done := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "no answer on stdin after 60 s; going on")
	}
}

func (s *scenario) run() {
	c := s.client
	m := s.opts.mount
	creds := func(secret *api.Secret) (map[string]any, error) {
		if secret == nil || secret.Data == nil {
			return nil, errors.New("no secret in the response")
		}
		return map[string]any{
			"username":       secret.Data["username"],
			"password":       secret.Data["password"],
			"lease_id":       secret.LeaseID,
			"lease_duration": secret.LeaseDuration,
			"renewable":      secret.Renewable,
		}, nil
	}

	s.step("health", func() (map[string]any, error) {
		h, err := c.Sys().Health()
		if err != nil {
			return nil, err
		}
		if !h.Initialized || h.Sealed {
			return nil, fmt.Errorf("health says initialized=%v sealed=%v", h.Initialized, h.Sealed)
		}
		return map[string]any{"initialized": h.Initialized, "sealed": h.Sealed, "standby": h.Standby, "version": h.Version, "server_time_utc": h.ServerTimeUTC}, nil
	})
	s.step("seal_status", func() (map[string]any, error) {
		st, err := c.Sys().SealStatus()
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": st.Type, "initialized": st.Initialized, "sealed": st.Sealed, "t": st.T, "n": st.N, "progress": st.Progress}, nil
	})
	s.step("mount", func() (map[string]any, error) {
		if err := c.Sys().Mount(m, &api.MountInput{Type: "database", Description: "mounted by the Vault Go client"}); err != nil {
			return nil, err
		}
		mounts, err := c.Sys().ListMounts()
		if err != nil {
			return nil, err
		}
		paths := make([]string, 0, len(mounts))
		for p := range mounts {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		mine, ok := mounts[m+"/"]
		if !ok {
			return map[string]any{"mounts": paths}, fmt.Errorf("ListMounts has no %q", m+"/")
		}
		return map[string]any{"mounts": paths, "type": mine.Type, "description": mine.Description, "accessor": mine.Accessor}, nil
	})
	s.step("config", func() (map[string]any, error) {
		_, err := c.Logical().Write(m+"/config/pg", map[string]any{
			"plugin_name":    "postgresql-database-plugin",
			"connection_url": s.opts.connectionURL,
			"username":       s.opts.dbUsername,
			"password":       s.opts.dbPassword,
			"allowed_roles":  []string{"ro", "short"},
		})
		if err != nil {
			return nil, err
		}
		read, err := c.Logical().Read(m + "/config/pg")
		if err != nil {
			return nil, err
		}
		if read == nil {
			return nil, errors.New("reading the config back answered nothing")
		}
		text, _ := json.Marshal(read.Data)
		return map[string]any{
			"plugin_name":      read.Data["plugin_name"],
			"allowed_roles":    read.Data["allowed_roles"],
			"password_visible": s.opts.dbPassword != "" && strings.Contains(string(text), s.opts.dbPassword),
		}, nil
	})
	s.step("role", func() (map[string]any, error) {
		_, err := c.Logical().Write(m+"/roles/ro", map[string]any{
			"db_name":             "pg",
			"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`},
			"default_ttl":         "30s",
			"max_ttl":             "1h",
			"username_template":   fmt.Sprintf(`{{ printf "%s%%s" (random 16) }}`, s.opts.usernamePrefix),
		})
		if err != nil {
			return nil, err
		}
		read, err := c.Logical().Read(m + "/roles/ro")
		if err != nil {
			return nil, err
		}
		if read == nil {
			return nil, errors.New("reading the role back answered nothing")
		}
		return map[string]any{"db_name": read.Data["db_name"], "default_ttl": read.Data["default_ttl"], "max_ttl": read.Data["max_ttl"]}, nil
	})
	s.step("list_roles", func() (map[string]any, error) {
		// Logical().List sends GET with ?list=true (the library turns its LIST into that).
		secret, err := c.Logical().List(m + "/roles")
		if err != nil {
			return nil, err
		}
		keys, err := secretKeys(secret)
		return map[string]any{"keys": keys}, err
	})
	s.step("list_roles_raw_method", func() (map[string]any, error) {
		// The HTTP method LIST itself, through the client's request machinery.
		// RawRequestWithContext is deprecated in favour of Logical(), whose List
		// never sends LIST; it is the library's only way to send it.
		resp, err := c.RawRequestWithContext(context.Background(), c.NewRequest("LIST", "/v1/"+m+"/roles"))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		secret, err := api.ParseSecret(resp.Body)
		if err != nil {
			return nil, err
		}
		keys, err := secretKeys(secret)
		return map[string]any{"status": resp.StatusCode, "keys": keys}, err
	})
	s.step("list_empty", func() (map[string]any, error) {
		// Nothing under static-roles: a 404, which the library turns into (nil, nil).
		secret, err := c.Logical().List(m + "/static-roles")
		if err != nil {
			return nil, err
		}
		return map[string]any{"nil_secret": secret == nil}, nil
	})

	// A short role whose creds a LifetimeWatcher renews (as applications do)
	// until the max_ttl cap ends the renewals; it runs while the steps below do.
	watched := s.step("watcher_start", func() (map[string]any, error) {
		_, err := c.Logical().Write(m+"/roles/short", map[string]any{
			"db_name":             "pg",
			"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			"default_ttl":         5,
			"max_ttl":             "10s",
			"username_template":   fmt.Sprintf(`{{ printf "%s%%s" (random 16) }}`, s.opts.usernamePrefix),
		})
		if err != nil {
			return nil, err
		}
		secret, err := c.Logical().Read(m + "/creds/short")
		if err != nil {
			return nil, err
		}
		values, err := creds(secret)
		if err != nil {
			return nil, err
		}
		delete(values, "password")
		watcher, err := c.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret, Increment: 5})
		if err != nil {
			return nil, err
		}
		s.watcher = watcher
		go watcher.Start()
		return values, nil
	})
	watchedLease, _ := watched["lease_id"].(string)

	issued := s.step("creds", func() (map[string]any, error) {
		secret, err := c.Logical().Read(m + "/creds/ro")
		if err != nil {
			return nil, err
		}
		return creds(secret)
	})
	s.emit(map[string]any{"event": "creds", "creds": issued})
	leaseID, _ := issued["lease_id"].(string)

	s.step("renew", func() (map[string]any, error) {
		secret, err := c.Sys().Renew(leaseID, 60)
		if err != nil {
			return nil, err
		}
		return map[string]any{"lease_id": secret.LeaseID, "lease_duration": secret.LeaseDuration, "renewable": secret.Renewable, "warnings": secret.Warnings}, nil
	})
	s.step("lookup", func() (map[string]any, error) {
		secret, err := c.Logical().Write("sys/leases/lookup", map[string]any{"lease_id": leaseID})
		if err != nil {
			return nil, err
		}
		if secret == nil {
			return nil, errors.New("lookup answered nothing")
		}
		number, _ := secret.Data["ttl"].(json.Number)
		ttl, err := number.Int64()
		if err != nil {
			return nil, fmt.Errorf("ttl %v: %w", secret.Data["ttl"], err)
		}
		return map[string]any{"id": secret.Data["id"], "ttl": ttl, "renewable": secret.Data["renewable"], "expire_time": secret.Data["expire_time"], "issue_time": secret.Data["issue_time"]}, nil
	})
	if s.opts.wait {
		waitForCaller(s, "revoke", map[string]any{"lookup": s.summary["lookup"]})
	}
	s.step("revoke", func() (map[string]any, error) {
		return nil, c.Sys().Revoke(leaseID)
	})
	s.step("lookup_after_revoke", func() (map[string]any, error) {
		_, err := c.Sys().Lookup(leaseID)
		re, err := responseError(err)
		if err != nil {
			return nil, err
		}
		return errorValues(re), nil
	})

	s.step("policy", func() (map[string]any, error) {
		rules := fmt.Sprintf(`path "%s/creds/ro" { capabilities = ["read"] }`, m)
		if err := c.Sys().PutPolicy("compat-ro", rules); err != nil {
			return nil, err
		}
		read, err := c.Sys().GetPolicy("compat-ro")
		if err != nil {
			return nil, err
		}
		return map[string]any{"round_trip": read == rules}, nil
	})
	renewable := true
	created := s.step("token_create", func() (map[string]any, error) {
		secret, err := c.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"compat-ro"}, TTL: "10m", DisplayName: "compat", Renewable: &renewable})
		if err != nil {
			return nil, err
		}
		if secret == nil || secret.Auth == nil {
			return nil, errors.New("no auth block in the response")
		}
		return map[string]any{
			"client_token":   secret.Auth.ClientToken,
			"accessor":       secret.Auth.Accessor,
			"policies":       secret.Auth.Policies,
			"lease_duration": secret.Auth.LeaseDuration,
			"renewable":      secret.Auth.Renewable,
		}, nil
	})
	childToken, _ := created["client_token"].(string)
	delete(created, "client_token")
	child, err := c.Clone()
	if err != nil {
		panic(err)
	}
	child.SetToken(childToken)

	s.step("token_lookup", func() (map[string]any, error) {
		// Lookup by the parent, LookupSelf by the token itself.
		byParent, err := c.Auth().Token().Lookup(childToken)
		if err != nil {
			return nil, err
		}
		self, err := child.Auth().Token().LookupSelf()
		if err != nil {
			return nil, err
		}
		ttl, err := self.TokenTTL()
		if err != nil {
			return nil, err
		}
		policies, err := self.TokenPolicies()
		if err != nil {
			return nil, err
		}
		accessor, err := self.TokenAccessor()
		if err != nil {
			return nil, err
		}
		parentAccessor, err := byParent.TokenAccessor()
		if err != nil {
			return nil, err
		}
		return map[string]any{
			"ttl":             int(ttl.Seconds()),
			"policies":        policies,
			"accessor":        accessor,
			"parent_accessor": parentAccessor,
			"display_name":    self.Data["display_name"],
			"id_matches":      self.Data["id"] == childToken,
		}, nil
	})
	s.step("token_renew_self", func() (map[string]any, error) {
		secret, err := child.Auth().Token().RenewSelf(300)
		if err != nil {
			return nil, err
		}
		return map[string]any{"lease_duration": secret.Auth.LeaseDuration, "renewable": secret.Auth.Renewable}, nil
	})
	s.step("token_creds", func() (map[string]any, error) {
		secret, err := child.Logical().Read(m + "/creds/ro")
		if err != nil {
			return nil, err
		}
		return creds(secret)
	})
	s.step("token_denied", func() (map[string]any, error) {
		// The policy grants dbx/creds/ro only.
		_, err := child.Logical().Read(m + "/config/pg")
		re, err := responseError(err)
		if err != nil {
			return nil, err
		}
		return errorValues(re), nil
	})
	s.step("token_revoke", func() (map[string]any, error) {
		return nil, c.Auth().Token().RevokeTree(childToken)
	})
	s.step("token_after_revoke", func() (map[string]any, error) {
		_, err := child.Auth().Token().LookupSelf()
		re, err := responseError(err)
		if err != nil {
			return nil, err
		}
		return errorValues(re), nil
	})

	s.step("error_response", func() (map[string]any, error) {
		_, err := c.Logical().Read(m + "/creds/no-such-role")
		re, err := responseError(err)
		if err != nil {
			return nil, err
		}
		values := errorValues(re)
		values["url"] = re.URL
		values["message"] = re.Error()
		return values, nil
	})

	extra := s.step("prefix_creds", func() (map[string]any, error) {
		secret, err := c.Logical().Read(m + "/creds/ro")
		if err != nil {
			return nil, err
		}
		return creds(secret)
	})
	delete(extra, "password")
	s.step("revoke_prefix", func() (map[string]any, error) {
		prefix := m + "/creds/ro/"
		if err := c.Sys().RevokeWithOptions(&api.RevokeOptions{LeaseID: prefix, Prefix: true, Sync: true}); err != nil {
			return nil, err
		}
		// Nothing is left under the prefix: the library turns the 404 into (nil, nil).
		left, err := c.Logical().List("sys/leases/lookup/" + prefix)
		if err != nil {
			return nil, err
		}
		keys := []string{}
		if left != nil {
			keys, err = secretKeys(left)
		}
		return map[string]any{"left": keys}, err
	})

	s.step("watcher", func() (map[string]any, error) {
		var durations []int
		var warnings []string
		deadline := time.After(30 * time.Second)
		for {
			select {
			case renewal := <-s.watcher.RenewCh():
				durations = append(durations, renewal.Secret.LeaseDuration)
				warnings = append(warnings, renewal.Secret.Warnings...)
			case err := <-s.watcher.DoneCh():
				values := map[string]any{"renewals": durations, "warnings": warnings}
				if err != nil {
					return values, err
				}
				// Revoke what is left of the lease; ends the database user now.
				return values, c.Sys().RevokeWithOptions(&api.RevokeOptions{LeaseID: watchedLease, Sync: true})
			case <-deadline:
				s.watcher.Stop()
				return map[string]any{"renewals": durations, "warnings": warnings}, errors.New("the watcher did not finish within 30 s")
			}
		}
	})
	s.step("delete_role", func() (map[string]any, error) {
		if _, err := c.Logical().Delete(m + "/roles/short"); err != nil {
			return nil, err
		}
		// A 404 without data: the library answers (nil, nil).
		read, err := c.Logical().Read(m + "/roles/short")
		if err != nil {
			return nil, err
		}
		secret, err := c.Logical().List(m + "/roles")
		if err != nil {
			return nil, err
		}
		keys, err := secretKeys(secret)
		return map[string]any{"read_nil": read == nil, "keys": keys}, err
	})
	s.step("unmount", func() (map[string]any, error) {
		if err := c.Sys().Unmount(m); err != nil {
			return nil, err
		}
		mounts, err := c.Sys().ListMounts()
		if err != nil {
			return nil, err
		}
		paths := make([]string, 0, len(mounts))
		for p := range mounts {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		return map[string]any{"mounts": paths}, nil
	})
	if s.opts.unsealKey != "" {
		s.sealAndUnseal()
	}
}

func (s *scenario) sealAndUnseal() {
	c := s.client
	s.step("seal", func() (map[string]any, error) {
		if err := c.Sys().Seal(); err != nil {
			return nil, err
		}
		st, err := c.Sys().SealStatus()
		if err != nil {
			return nil, err
		}
		h, err := c.Sys().Health()
		if err != nil {
			return nil, err
		}
		// The client retries 5xx answers; once is enough to see the 503.
		once, err := c.Clone()
		if err != nil {
			return nil, err
		}
		once.SetToken(c.Token())
		once.SetMaxRetries(0)
		_, err = once.Logical().Read(s.opts.mount + "/roles")
		re, err := responseError(err)
		if err != nil {
			return nil, err
		}
		return map[string]any{"sealed": st.Sealed, "health_sealed": h.Sealed, "read_while_sealed": errorValues(re)}, nil
	})
	s.step("unseal", func() (map[string]any, error) {
		st, err := c.Sys().Unseal(s.opts.unsealKey)
		if err != nil {
			return nil, err
		}
		h, err := c.Sys().Health()
		if err != nil {
			return nil, err
		}
		mounts, err := c.Sys().ListMounts()
		if err != nil {
			return nil, err
		}
		_, hasDefault := mounts["database/"]
		return map[string]any{"sealed": st.Sealed, "progress": st.Progress, "health_sealed": h.Sealed, "default_mount": hasDefault}, nil
	})
}

func main() {
	var opts options
	flag.StringVar(&opts.mount, "mount", "dbx", "path to mount the second database engine at")
	flag.StringVar(&opts.connectionURL, "connection-url", "", "templated PostgreSQL URL ({{username}}/{{password}})")
	flag.StringVar(&opts.dbUsername, "db-username", "postgres", "PostgreSQL admin user")
	flag.StringVar(&opts.usernamePrefix, "username-prefix", "", "prefix of every user the role creates (for cleanup)")
	flag.BoolVar(&opts.wait, "wait", false, "before revoking the lease, print {\"waiting\":\"revoke\"} and wait for a line on stdin")
	flag.Parse()
	// Secrets come from the environment, not argv (which other users can see).
	opts.dbPassword = os.Getenv("COMPAT_DB_PASSWORD")
	opts.unsealKey = os.Getenv("COMPAT_UNSEAL_KEY")
	if opts.connectionURL == "" || opts.usernamePrefix == "" {
		fmt.Fprintln(os.Stderr, "usage: [COMPAT_DB_PASSWORD=...] [COMPAT_UNSEAL_KEY=...] vault-go-client -connection-url URL -username-prefix PREFIX [-db-username U] [-mount dbx] [-wait]")
		os.Exit(2)
	}

	config := api.DefaultConfig()
	if config.Error != nil {
		fmt.Fprintln(os.Stderr, "vault config:", config.Error)
		os.Exit(2)
	}
	config.Timeout = 30 * time.Second
	client, err := api.NewClient(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vault client:", err)
		os.Exit(2)
	}
	if token := os.Getenv("VAULT_TOKEN"); token != "" {
		client.SetToken(token)
	}

	s := &scenario{opts: opts, client: client, summary: map[string]any{}, out: json.NewEncoder(os.Stdout)}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				failed, ok := r.(stepFailed)
				if !ok {
					panic(r)
				}
				s.summary["failed_step"] = failed.name
				code = 1
			}
		}()
		s.run()
	}()
	s.summary["ok"] = code == 0
	s.summary["client"] = "github.com/hashicorp/vault/api"
	s.summary["event"] = "summary"
	s.emit(s.summary)
	os.Exit(code)
}
