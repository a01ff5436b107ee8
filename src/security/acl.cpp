#include "security/acl.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "base/clock.h"
#include "base/glob.h"
#include "security/audit.h"
#include "security/identity.h"
#include "security/token.h"

namespace keel::security {

namespace {

constexpr std::array<std::string_view, kCatCount> kCategoryNames = {
    "keyspace", "read",  "write",     "set",        "sortedset",   "list",      "hash",  "string",
    "bitmap",   "hyperloglog", "geo", "stream",     "pubsub",      "admin",     "fast",  "slow",
    "blocking", "dangerous", "connection", "transaction", "scripting", "cache", "route", "transit", "secret"};

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool has_space(std::string_view s) {
  for (char c : s)
    if (std::isspace(static_cast<unsigned char>(c)) || c == '\0') return true;
  return false;
}

HashCost g_cost;

void sodium_ready() {
  static const int ok = sodium_init();
  (void)ok;
}

Error rule_error(std::string msg) { return Error{Errc::kInvalidArgument, std::move(msg)}; }

constexpr std::string_view kSyntax =
    "Syntax error (rules: on, off, nopass, resetpass, >password, <password, #hash, !hash, "
    "+command, -command, +command|subcommand, +@category, -@category, allcommands, nocommands, "
    "~pattern, allkeys, resetkeys, &pattern, allchannels, resetchannels, reset)";
constexpr std::string_view kUnknown =
    "Unknown command or category name in ACL (ACL CAT lists the categories, COMMAND LIST the commands)";
constexpr std::string_view kNoSuchPassword = "The password you are trying to remove from the user does not exist";

void set_bit(User& u, size_t i, bool on) {
  if (on) u.allowed[i / 64] |= uint64_t{1} << (i % 64);
  else u.allowed[i / 64] &= ~(uint64_t{1} << (i % 64));
}

// Drops earlier rules about the same command or category (and, for a whole command, its
// subcommand rules), then appends this one: the rules stay short and keep their order.
void update_rules(User& u, std::string_view what, bool allow) {
  std::string w = lower(what);
  std::erase_if(u.command_rules, [&](const std::string& r) {
    std::string_view body = std::string_view(r).substr(1);
    if (body == w) return true;
    return w.find('|') == std::string::npos && body.size() > w.size() && body.starts_with(w) && body[w.size()] == '|';
  });
  u.command_rules.push_back((allow ? "+" : "-") + w);
}

void set_command(User& u, uint16_t i, bool allow) {
  set_bit(u, i, allow);
  u.sub_allowed.erase(i);
  u.sub_denied.erase(i);
}

void erase_value(std::vector<std::string>& v, std::string_view s) {
  std::erase_if(v, [&](const std::string& x) { return x == s; });
}

bool add_unique(std::vector<std::string>& v, std::string_view s) {
  if (std::find(v.begin(), v.end(), s) != v.end()) return false;
  v.emplace_back(s);
  return true;
}

}  // namespace

std::span<const std::string_view> category_names() { return kCategoryNames; }

std::optional<Category> category_by_name(std::string_view name) {
  for (unsigned i = 0; i < kCatCount; ++i)
    if (ieq(kCategoryNames[i], name)) return static_cast<Category>(i);
  return std::nullopt;
}

CommandCatalog::CommandCatalog(std::vector<CatalogEntry> entries) : entries_(std::move(entries)) {
  for (size_t i = 0; i < entries_.size(); ++i) by_name_.emplace(lower(entries_[i].name), static_cast<uint16_t>(i));
}

std::optional<uint16_t> CommandCatalog::find(std::string_view name) const {
  auto it = by_name_.find(lower(name));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

void set_hash_cost(HashCost cost) { g_cost = cost; }

Result<std::string> hash_password(std::string_view password) {
  sodium_ready();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), g_cost.ops, g_cost.mem_bytes,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    return make_error(Errc::kOutOfMemory, "cannot hash the password (out of memory for Argon2id)");
  return std::string(out);
}

bool verify_password(const std::string& hash, std::string_view password) {
  sodium_ready();
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

bool looks_like_hash(std::string_view s) {
  return s.starts_with("$argon2id$v=") && s.size() < crypto_pwhash_STRBYTES && !has_space(s) &&
         std::count(s.begin(), s.end(), '$') == 5;
}

std::string random_hex(size_t chars) {
  sodium_ready();
  std::string out;
  unsigned char b[32];
  while (out.size() < chars) {
    randombytes_buf(b, sizeof b);
    for (unsigned char x : b) out += fmt::format("{:02x}", x);
  }
  out.resize(chars);
  return out;
}

bool User::can_run(uint16_t index, std::string_view sub) const {
  bool on = index / 64 < allowed.size() && (allowed[index / 64] >> (index % 64)) & 1;
  if (on) {
    if (sub_denied.empty() || sub.empty()) return true;
    auto it = sub_denied.find(index);
    if (it == sub_denied.end()) return true;
    for (auto& s : it->second)
      if (ieq(s, sub)) return false;
    return true;
  }
  if (sub_allowed.empty() || sub.empty()) return false;
  auto it = sub_allowed.find(index);
  if (it == sub_allowed.end()) return false;
  for (auto& s : it->second)
    if (ieq(s, sub)) return true;
  return false;
}

bool User::key_allowed(std::string_view key) const {
  if (allkeys) return true;
  for (auto& p : keys)
    if (glob_match(p, key)) return true;
  return false;
}

bool User::channel_allowed(std::string_view channel, bool is_pattern) const {
  if (allchannels) return true;
  for (auto& p : channels)
    if (is_pattern ? p == channel : glob_match(p, channel)) return true;
  return false;
}

std::string User::describe_commands() const {
  std::string out = allcommands ? "+@all" : "-@all";
  for (auto& r : command_rules) out += " " + r;
  return out;
}

std::string User::describe() const {
  std::string out = enabled ? "on" : "off";
  if (nopass) out += " nopass";
  for (auto& h : passwords) out += " #" + h;
  if (allkeys) out += " ~*";
  else
    for (auto& k : keys) out += " ~" + k;
  if (allchannels) {
    out += " &*";
  } else {
    out += " resetchannels";
    for (auto& c : channels) out += " &" + c;
  }
  return out + " " + describe_commands();
}

User new_user(std::string name) {
  User u;
  u.name = std::move(name);
  return u;
}

User default_user() {
  User u = new_user("default");
  u.enabled = true;
  u.nopass = true;
  u.allcommands = true;
  u.allkeys = true;
  u.allchannels = true;
  return u;
}

Status check_user_name(std::string_view name) {
  if (name.empty() || name.size() > 128)
    return make_error(Errc::kInvalidArgument, "a user name has 1 to 128 characters");
  for (char c : name)
    if (!std::isgraph(static_cast<unsigned char>(c)))
      return make_error(Errc::kInvalidArgument, "a user name has printable characters only, without spaces");
  return {};
}

Status apply_rule(User& u, std::string_view rule, const CommandCatalog& cat) {
  if (u.allowed.size() != (cat.size() + 63) / 64) u.allowed.resize((cat.size() + 63) / 64, u.allcommands ? ~uint64_t{0} : 0);
  if (rule.empty()) return std::unexpected(rule_error(std::string(kSyntax)));
  if (ieq(rule, "on")) {
    u.enabled = true;
  } else if (ieq(rule, "off")) {
    u.enabled = false;
  } else if (ieq(rule, "nopass")) {
    u.nopass = true;
    u.passwords.clear();
  } else if (ieq(rule, "resetpass")) {
    u.nopass = false;
    u.passwords.clear();
  } else if (ieq(rule, "allkeys") || rule == "~*") {
    u.allkeys = true;
    u.keys.clear();
  } else if (ieq(rule, "resetkeys")) {
    u.allkeys = false;
    u.keys.clear();
  } else if (ieq(rule, "allchannels") || rule == "&*") {
    u.allchannels = true;
    u.channels.clear();
  } else if (ieq(rule, "resetchannels")) {
    u.allchannels = false;
    u.channels.clear();
  } else if (ieq(rule, "allcommands") || ieq(rule, "+@all")) {
    u.allcommands = true;
    u.command_rules.clear();
    std::fill(u.allowed.begin(), u.allowed.end(), ~uint64_t{0});
    u.sub_allowed.clear();
    u.sub_denied.clear();
  } else if (ieq(rule, "nocommands") || ieq(rule, "-@all")) {
    u.allcommands = false;
    u.command_rules.clear();
    std::fill(u.allowed.begin(), u.allowed.end(), 0);
    u.sub_allowed.clear();
    u.sub_denied.clear();
  } else if (ieq(rule, "reset")) {
    User fresh = new_user(u.name);
    fresh.allowed.assign(u.allowed.size(), 0);
    u = std::move(fresh);
  } else if (ieq(rule, "sanitize-payload") || ieq(rule, "skip-sanitize-payload") || ieq(rule, "clearselectors")) {
    // Accepted for compatibility: keel has no RESTORE payloads to sanitize and no selectors.
  } else if (rule[0] == '>' || rule[0] == '<') {
    std::string_view pw = rule.substr(1);
    size_t found = u.passwords.size();
    for (size_t i = 0; i < u.passwords.size(); ++i)
      if (verify_password(u.passwords[i], pw)) found = i;
    if (rule[0] == '>') {
      if (found == u.passwords.size()) {
        auto h = hash_password(pw);
        if (!h) return std::unexpected(h.error());
        u.passwords.push_back(std::move(*h));
      }
    } else {
      if (found == u.passwords.size()) return std::unexpected(rule_error(std::string(kNoSuchPassword)));
      u.passwords.erase(u.passwords.begin() + static_cast<ptrdiff_t>(found));
    }
    u.nopass = false;
  } else if (rule[0] == '#' || rule[0] == '!') {
    std::string_view h = rule.substr(1);
    if (!looks_like_hash(h))
      return std::unexpected(rule_error(
          "The password hash must be an Argon2id hash as ACL GETUSER shows it ($argon2id$v=19$...); keel does "
          "not keep SHA-256 hashes of passwords (use >password instead)"));
    if (rule[0] == '#') {
      add_unique(u.passwords, h);
    } else {
      if (std::find(u.passwords.begin(), u.passwords.end(), h) == u.passwords.end())
        return std::unexpected(rule_error(std::string(kNoSuchPassword)));
      erase_value(u.passwords, h);
    }
    u.nopass = false;
  } else if (rule[0] == '%') {
    return std::unexpected(rule_error(
        "Read or write key permissions (%R~, %W~, %RW~) are not supported by keel; use ~pattern"));
  } else if (rule[0] == '(') {
    return std::unexpected(rule_error("Selectors ((...)) are not supported by keel; give the rules directly"));
  } else if (rule[0] == '~') {
    if (u.allkeys)
      return std::unexpected(rule_error(
          "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any "
          "effect. Try 'resetkeys' to start with an empty list of patterns"));
    if (has_space(rule.substr(1))) return std::unexpected(rule_error(std::string(kSyntax)));
    add_unique(u.keys, rule.substr(1));
  } else if (rule[0] == '&') {
    if (u.allchannels)
      return std::unexpected(rule_error(
          "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any "
          "effect. Try 'resetchannels' to start with an empty list of channels"));
    if (has_space(rule.substr(1))) return std::unexpected(rule_error(std::string(kSyntax)));
    add_unique(u.channels, rule.substr(1));
  } else if ((rule[0] == '+' || rule[0] == '-') && rule.size() > 1 && rule[1] == '@') {
    bool allow = rule[0] == '+';
    auto c = category_by_name(rule.substr(2));
    if (!c) return std::unexpected(rule_error(std::string(kUnknown)));
    for (size_t i = 0; i < cat.size(); ++i)
      if (cat.at(i).categories & cat_bit(*c)) set_command(u, static_cast<uint16_t>(i), allow);
    update_rules(u, rule.substr(1), allow);
  } else if (rule[0] == '+' || rule[0] == '-') {
    bool allow = rule[0] == '+';
    std::string_view body = rule.substr(1);
    size_t bar = body.find('|');
    if (bar == std::string_view::npos) {
      auto i = cat.find(body);
      if (!i) return std::unexpected(rule_error(std::string(kUnknown)));
      set_command(u, *i, allow);
      update_rules(u, cat.at(*i).name, allow);
    } else {
      std::string_view name = body.substr(0, bar), sub = body.substr(bar + 1);
      auto i = cat.find(name);
      if (!i) return std::unexpected(rule_error(std::string(kUnknown)));
      if (sub.empty() || sub.find('|') != std::string_view::npos)
        return std::unexpected(rule_error(std::string(kSyntax)));
      std::string s = lower(sub);
      bool on = (u.allowed[*i / 64] >> (*i % 64)) & 1;
      if (on) {
        if (allow) erase_value(u.sub_denied[*i], s);
        else add_unique(u.sub_denied[*i], s);
        if (u.sub_denied[*i].empty()) u.sub_denied.erase(*i);
      } else {
        if (allow) add_unique(u.sub_allowed[*i], s);
        else erase_value(u.sub_allowed[*i], s);
        if (u.sub_allowed[*i].empty()) u.sub_allowed.erase(*i);
      }
      update_rules(u, fmt::format("{}|{}", cat.at(*i).name, s), allow);
    }
  } else {
    return std::unexpected(rule_error(std::string(kSyntax)));
  }
  return {};
}

Status apply_rules(User& u, std::span<const std::string> rules, const CommandCatalog& cat, std::string* error_rule) {
  User next = u;
  for (auto& r : rules) {
    if (auto st = apply_rule(next, r, cat); !st) {
      if (error_rule) *error_rule = r;
      return st;
    }
  }
  u = std::move(next);
  return {};
}

Result<User> parse_user(std::string name, std::string_view description, const CommandCatalog& cat) {
  if (auto st = check_user_name(name); !st) return std::unexpected(st.error());
  User u = new_user(std::move(name));
  std::vector<std::string> rules;
  for (size_t i = 0; i < description.size();) {
    size_t j = description.find(' ', i);
    if (j == std::string_view::npos) j = description.size();
    if (j > i) rules.emplace_back(description.substr(i, j - i));
    i = j + 1;
  }
  std::string bad;
  if (auto st = apply_rules(u, rules, cat, &bad); !st)
    return make_error(Errc::kInvalidArgument, fmt::format("rule '{}': {}", bad, st.error().message));
  return u;
}

// --- Acl ---

Acl::Acl(CommandCatalog catalog) : catalog_(std::move(catalog)) {
  sodium_ready();
  randombytes_buf(mac_key_, sizeof mac_key_);
  User d = security::default_user();
  d.allowed.assign((catalog_.size() + 63) / 64, ~uint64_t{0});
  builtin_default_ = std::make_shared<const User>(std::move(d));
}

void Acl::bump_locked() { generation_.fetch_add(1, std::memory_order_acq_rel); }

std::shared_ptr<const User> Acl::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = users_.find(name);
  if (it != users_.end()) return it->second;
  if (name == "default") return builtin_default_;
  return nullptr;
}

std::shared_ptr<const User> Acl::default_user() const { return find("default"); }

std::vector<std::shared_ptr<const User>> Acl::users() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const User>> out;
  if (!users_.count("default")) out.push_back(builtin_default_);
  for (auto& [n, u] : users_) out.push_back(u);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a->name < b->name; });
  return out;
}

std::string Acl::cache_key(std::string_view name, std::string_view password) const {
  unsigned char mac[32];
  std::string in(name);
  in.push_back('\0');
  in.append(password);
  crypto_generichash(mac, sizeof mac, reinterpret_cast<const unsigned char*>(in.data()), in.size(), mac_key_,
                     sizeof mac_key_);
  sodium_memzero(in.data(), in.size());
  std::string key(name);
  key.push_back('\0');
  key.append(reinterpret_cast<const char*>(mac), sizeof mac);
  return key;
}

std::optional<std::shared_ptr<const User>> Acl::authenticate_cached(std::string_view name, std::string_view password) {
  auto u = find(name);
  if (!u || !u->enabled) return std::shared_ptr<const User>();
  if (u->nopass) return u;
  if (u->passwords.empty()) return std::shared_ptr<const User>();
  std::string key = cache_key(name, password);
  std::lock_guard lock(mu_);
  auto it = verified_.find(key);
  if (it != verified_.end() && std::find(u->passwords.begin(), u->passwords.end(), it->second) != u->passwords.end())
    return u;
  return std::nullopt;
}

std::shared_ptr<const User> Acl::authenticate(std::string_view name, std::string_view password) {
  if (auto quick = authenticate_cached(name, password)) return *quick;
  auto u = find(name);
  if (!u) return nullptr;
  for (auto& h : u->passwords) {
    if (!verify_password(h, password)) continue;
    std::string key = cache_key(name, password);
    std::lock_guard lock(mu_);
    if (verified_.size() >= 4096) verified_.clear();  // bounded
    verified_[key] = h;
    return u;
  }
  return nullptr;
}

void Acl::set_on_change(std::function<void()> cb) {
  std::lock_guard lock(mu_);
  on_change_ = std::move(cb);
}

void Acl::changed() {
  std::function<void()> cb;
  {
    std::lock_guard lock(mu_);
    cb = on_change_;
  }
  if (cb) cb();
}

void Acl::set_builtin_default(User u) {
  {
    std::lock_guard lock(mu_);
    u.allowed.resize((catalog_.size() + 63) / 64, u.allcommands ? ~uint64_t{0} : 0);
    builtin_default_ = std::make_shared<const User>(std::move(u));
    bump_locked();
  }
  changed();
}

void Acl::replace_all(std::vector<User> users) {
  {
    std::lock_guard lock(mu_);
    users_.clear();
    for (auto& u : users) {
      std::string n = u.name;
      users_[n] = std::make_shared<const User>(std::move(u));
    }
    bump_locked();
  }
  changed();
}

void Acl::put(User u) {
  {
    std::lock_guard lock(mu_);
    std::string n = u.name;
    users_[n] = std::make_shared<const User>(std::move(u));
    bump_locked();
  }
  changed();
}

void Acl::erase(std::string_view name) {
  {
    std::lock_guard lock(mu_);
    if (auto it = users_.find(name); it != users_.end()) users_.erase(it);
    bump_locked();
  }
  changed();
}

Acl::Denials Acl::denials() const {
  return {denied_auth_.load(std::memory_order_relaxed), denied_command_.load(std::memory_order_relaxed),
          denied_key_.load(std::memory_order_relaxed), denied_channel_.load(std::memory_order_relaxed)};
}

void Acl::log(LogEntry e) {
  if (e.reason == "auth") denied_auth_.fetch_add(1, std::memory_order_relaxed);
  else if (e.reason == "command") denied_command_.fetch_add(1, std::memory_order_relaxed);
  else if (e.reason == "key") denied_key_.fetch_add(1, std::memory_order_relaxed);
  else if (e.reason == "channel") denied_channel_.fetch_add(1, std::memory_order_relaxed);
  int64_t now = SystemClock::instance().now_ms();
  e.created_ms = e.updated_ms = now;
  std::lock_guard lock(mu_);
  // The same denial again within 60 s counts on the existing entry (as Redis groups them).
  for (auto it = log_.begin(); it != log_.end(); ++it) {
    if (it->reason == e.reason && it->context == e.context && it->object == e.object && it->username == e.username &&
        now - it->updated_ms < 60000) {
      LogEntry again = std::move(*it);
      log_.erase(it);
      again.count++;
      again.updated_ms = now;
      again.client_info = std::move(e.client_info);
      log_.push_front(std::move(again));
      return;
    }
  }
  log_.push_front(std::move(e));
  while (log_.size() > max_log) log_.pop_back();
}

std::vector<LogEntry> Acl::log_entries(size_t count) const {
  std::lock_guard lock(mu_);
  std::vector<LogEntry> out;
  for (size_t i = 0; i < log_.size() && i < count; ++i) out.push_back(log_[i]);
  return out;
}

void Acl::log_reset() {
  std::lock_guard lock(mu_);
  log_.clear();
}

// ---- tokens, certificate users, lockout ----

void Acl::set_token_key(std::shared_ptr<const TokenKey> key) {
  {
    std::lock_guard lock(mu_);
    token_key_ = std::move(key);
  }
  std::lock_guard lock(token_cache_mu_);
  token_cache_.clear();
}

bool Acl::tokens_enabled() const {
  std::lock_guard lock(mu_);
  return token_key_ != nullptr;
}

Result<Acl::TokenLogin> Acl::authenticate_token(std::string_view name, std::string_view token,
                                                std::string_view cert_sha256, int64_t now_ms,
                                                bool require_proof) const {
  std::shared_ptr<const TokenKey> key;
  {
    std::lock_guard lock(mu_);
    key = token_key_;
  }
  auto refuse = [&](std::string m) {
    token_refusals_.fetch_add(1, std::memory_order_relaxed);
    return make_error(Errc::kInvalidArgument, std::move(m));
  };
  if (!key)
    return refuse("tokens are not accepted on this node (set auth.token_public_key_file to the public key of `keel token init`)");
  const int64_t now_s = now_ms / 1000;
  std::string ck = token.size() <= kMaxTokenBytes
                       ? sha256_raw(std::string(token) + '\0' + std::string(cert_sha256) + (require_proof ? "p" : "s"))
                       : std::string();
  std::shared_ptr<const TokenGrant> grant;
  if (!ck.empty()) {
    std::lock_guard lock(token_cache_mu_);
    if (auto it = token_cache_.find(ck); it != token_cache_.end()) {
      if (now_s < it->second->expires_s) grant = it->second;
      else token_cache_.erase(it);
    }
  }
  if (!grant) {
    VerifyInput in;
    in.now_s = now_s;
    in.cert_sha256 = cert_sha256;
    in.require_proof = require_proof;
    auto g = verify_token(token, *key, in, catalog_);
    if (!g) return refuse(g.error().message);
    grant = std::make_shared<const TokenGrant>(std::move(*g));
    std::lock_guard lock(token_cache_mu_);
    if (token_cache_.size() >= 4096) token_cache_.clear();  // bounded
    token_cache_.emplace(ck, grant);
  }
  if (auto id = revoked(*grant))
    return refuse(fmt::format("revoked: the token (revocation id {}{}) was revoked by an administrator (ACL REVOKE, "
                              "`keel token revoke`); ask for a new token (keel token issue)",
                              *id, *id == grant->revocation_ids.back() ? "" : ", a token it was attenuated from"));
  if (!name.empty() && name != grant->user)
    return refuse(fmt::format("the token is for user '{}', not '{}'", grant->user, name));
  auto u = find(grant->user);
  if (!u || !u->enabled) return refuse(fmt::format("the token's user '{}' does not exist or is off", grant->user));
  return TokenLogin{std::move(u), std::move(grant)};
}

void Acl::replace_revocations(std::vector<Revocation> all) {
  {
    std::lock_guard lock(mu_);
    revoked_.clear();
    for (auto& r : all) {
      std::string id = r.id;
      revoked_[id] = std::move(r);
    }
    bump_locked();
  }
  changed();
}

void Acl::put_revocation(Revocation r) {
  {
    std::lock_guard lock(mu_);
    std::string id = r.id;
    revoked_[id] = std::move(r);
    bump_locked();
  }
  changed();
}

void Acl::erase_revocation(std::string_view id) {
  {
    std::lock_guard lock(mu_);
    if (auto it = revoked_.find(id); it != revoked_.end()) revoked_.erase(it);
    bump_locked();
  }
  changed();
}

std::vector<Acl::Revocation> Acl::revocations() const {
  std::lock_guard lock(mu_);
  std::vector<Revocation> out;
  out.reserve(revoked_.size());
  for (auto& [id, r] : revoked_) out.push_back(r);
  return out;
}

std::optional<std::string> Acl::revoked(const TokenGrant& grant) const {
  std::lock_guard lock(mu_);
  if (revoked_.empty()) return std::nullopt;
  for (auto& id : grant.revocation_ids)
    if (revoked_.count(id)) return id;
  return std::nullopt;
}

std::string encode_revocation(const Acl::Revocation& r) {
  return nlohmann::json{{"expires_s", r.expires_s}, {"user", r.user}, {"revoked_at_s", r.revoked_at_s}}.dump();
}

Result<Acl::Revocation> decode_revocation(std::string_view id, std::string_view value) {
  if (!is_revocation_id(id))
    return make_error(Errc::kInvalidArgument, fmt::format("'{}' is not a revocation id (32 hex digits)", id.substr(0, 64)));
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("expires_s") || !j["expires_s"].is_number_integer())
    return make_error(Errc::kInvalidArgument, "a revocation must be a JSON object with an integer expires_s");
  Acl::Revocation r;
  r.id = std::string(id);
  r.expires_s = j["expires_s"].get<int64_t>();
  if (j.contains("user") && j["user"].is_string()) r.user = j["user"].get<std::string>();
  if (j.contains("revoked_at_s") && j["revoked_at_s"].is_number_integer()) r.revoked_at_s = j["revoked_at_s"].get<int64_t>();
  return r;
}

std::vector<std::string> prunable_revocations(const std::vector<Acl::Revocation>& all, int64_t now_s, size_t max) {
  std::vector<std::string> out;
  for (auto& r : all) {
    if (out.size() >= max) break;
    if (r.expires_s + kRevocationGraceS < now_s) out.push_back(r.id);
  }
  return out;
}

void Acl::set_cert_users(bool enabled, std::string cluster_id) {
  std::lock_guard lock(mu_);
  cert_users_ = enabled;
  cluster_id_ = std::move(cluster_id);
}

std::shared_ptr<const User> Acl::user_for_certificate(const std::vector<std::string>& uris) const {
  std::string cluster;
  {
    std::lock_guard lock(mu_);
    if (!cert_users_) return nullptr;
    cluster = cluster_id_;
  }
  for (auto& uri : uris) {
    auto id = parse_spiffe_id(uri);
    if (!id || id->kind != SpiffeId::Kind::kClient || id->cluster != cluster) continue;
    auto u = find(id->name);
    if (u && u->enabled) return u;
  }
  return nullptr;
}

void Acl::set_lockout_policy(LockoutPolicy p) {
  std::lock_guard lock(lockout_mu_);
  lockout_.set_policy(p);
}

std::optional<Acl::Locked> Acl::lock_of(std::string_view user, std::string_view ip, int64_t now_ms) const {
  std::lock_guard lock(lockout_mu_);
  Locked l;
  for (std::string subject : {"user:" + std::string(user), "addr:" + std::string(ip)}) {
    int64_t ms = lockout_.locked_for(subject, now_ms);
    if (ms > l.remaining_ms) l = Locked{subject, ms};
  }
  if (l.remaining_ms == 0) return std::nullopt;
  return l;
}

std::optional<Acl::Locked> Acl::locked(std::string_view user, std::string_view ip, int64_t now_ms) {
  auto l = lock_of(user, ip, now_ms);
  if (l) count_lockout_refusal();
  return l;
}

LockoutPolicy Acl::lockout_policy() const {
  std::lock_guard lock(lockout_mu_);
  return lockout_.policy();
}

void Acl::mirror_lockout(const Lockout::Entry& e) {
  std::lock_guard lock(lockout_mu_);
  lockout_.mirror(e);
}

void Acl::auth_failed(std::string_view user, std::string_view ip, int64_t now_ms) {
  std::string u = "user:" + std::string(user), a = "addr:" + std::string(ip);
  int64_t user_lock_ms = 0, addr_lock_ms = 0;
  {
    std::lock_guard lock(lockout_mu_);
    user_lock_ms = lockout_.failure(u, now_ms);
    addr_lock_ms = lockout_.failure(a, now_ms);
  }
  if (user_lock_ms > 0 || addr_lock_ms > 0) lockouts_started_.fetch_add(1, std::memory_order_relaxed);
  if (user_lock_ms > 0) audit::emit(audit::kLockout, {{"subject", u}, {"locked_ms", std::to_string(user_lock_ms)}});
  if (addr_lock_ms > 0) audit::emit(audit::kLockout, {{"subject", a}, {"locked_ms", std::to_string(addr_lock_ms)}});
}

bool Acl::auth_succeeded(std::string_view user, std::string_view ip) {
  std::lock_guard lock(lockout_mu_);
  const size_t before = lockout_.size();
  lockout_.success("user:" + std::string(user));
  lockout_.success("addr:" + std::string(ip));
  return lockout_.size() != before;
}

std::vector<Lockout::Entry> Acl::lockouts() const {
  std::lock_guard lock(lockout_mu_);
  return lockout_.entries();
}

size_t Acl::unlock(std::string_view subject) {
  std::lock_guard lock(lockout_mu_);
  return lockout_.unlock(subject);
}

}  // namespace keel::security
