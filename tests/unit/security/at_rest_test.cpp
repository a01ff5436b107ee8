// Encryption at rest: the AES-256-GCM value codec and the keyring of wrapped data keys.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "security/at_rest_codec.h"
#include "security/keyring.h"

namespace keel::security::at_rest {
namespace {

DataKey key_of(uint32_t version, uint8_t fill) {
  DataKey k;
  k.version = version;
  k.bytes.fill(fill);
  return k;
}

TEST(AtRestCodec, SealOpenRoundTripAndOverhead) {
  auto k = key_of(7, 0x11);
  for (std::string plain : {std::string(), std::string("v"), std::string(1000, 'x'), std::string("\0\1\2", 3)}) {
    std::string out = "prefix";
    ASSERT_TRUE(seal(k, "key", "hdr", plain, out));
    ASSERT_EQ(out.size(), 6 + plain.size() + kSealOverheadBytes);
    EXPECT_EQ(out.substr(0, 6), "prefix");
    auto view = parse_sealed(std::string_view(out).substr(6));
    ASSERT_TRUE(view);
    EXPECT_EQ(view->version, 7u);
    if (plain.size() >= 8) {  // the ciphertext is not the plaintext
      EXPECT_EQ(std::string(view->ciphertext).find(plain), std::string::npos);
    }
    std::string back;
    ASSERT_TRUE(open_sealed(k, *view, "key", "hdr", back));
    EXPECT_EQ(back, plain);
  }
}

TEST(AtRestCodec, NoncesDiffer) {
  auto k = key_of(1, 0x22);
  std::string a, b;
  ASSERT_TRUE(seal(k, "", "", "same", a));
  ASSERT_TRUE(seal(k, "", "", "same", b));
  EXPECT_NE(a, b);
}

TEST(AtRestCodec, NoncesAreDistinctAcrossReseeds) {
  // 2^16 values per random start: 150 000 values cross two reseeds.
  auto k = key_of(1, 0x23);
  std::set<std::string> seen;
  std::string out;
  for (int i = 0; i < 150000; ++i) {
    out.clear();
    ASSERT_TRUE(seal(k, "", "", "", out));
    ASSERT_TRUE(seen.insert(std::string(parse_sealed(out)->nonce)).second) << "nonce repeated at " << i;
  }
}

TEST(AtRestCodec, TamperingWrongKeyOrOtherAadFailsAuthentication) {
  auto k = key_of(3, 0x33);
  std::string sealed;
  ASSERT_TRUE(seal(k, "user:1", "header", "secret value", sealed));
  std::string plain = "stale";
  // Another associated data (the value moved to another key) fails.
  auto v = parse_sealed(sealed);
  ASSERT_TRUE(v);
  auto r = open_sealed(k, *v, "user:2", "header", plain);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCorruption);
  EXPECT_NE(r.error().message.find("failed authentication"), std::string::npos) << r.error().message;
  EXPECT_TRUE(plain.empty());  // never unauthenticated bytes
  EXPECT_FALSE(open_sealed(k, *v, "user:1", "HEADER", plain));
  // A wrong key with the same version.
  auto other = key_of(3, 0x34);
  EXPECT_FALSE(open_sealed(other, *v, "user:1", "header", plain));
  // Every single flipped byte (version, nonce, ciphertext, tag) is detected.
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x01;
    auto bv = parse_sealed(bad);
    ASSERT_TRUE(bv);
    if (bv->version != 3) continue;  // a flipped version byte names another key: the caller looks that up
    EXPECT_FALSE(open_sealed(k, *bv, "user:1", "header", plain)) << "byte " << i;
  }
  // The right key and data still open it (the thread's context recovers from failures).
  EXPECT_TRUE(open_sealed(k, *v, "user:1", "header", plain));
  EXPECT_EQ(plain, "secret value");
}

TEST(AtRestCodec, ParseRejectsShortInput) {
  for (size_t n = 0; n < kSealOverheadBytes; ++n) {
    auto r = parse_sealed(std::string(n, 'a'));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kCorruption);
    EXPECT_FALSE(sealed_version(std::string(n, 'a')));
  }
  EXPECT_TRUE(parse_sealed(std::string(kSealOverheadBytes, 'a')));
}

TEST(AtRestCodec, TwoKeysAlternatingOnOneThread) {
  auto a = key_of(1, 0xa1), b = key_of(2, 0xb2);
  for (int i = 0; i < 10; ++i) {
    std::string sa, sb, pa, pb;
    ASSERT_TRUE(seal(a, "k", "", "A" + std::to_string(i), sa));
    ASSERT_TRUE(seal(b, "k", "", "B" + std::to_string(i), sb));
    ASSERT_TRUE(open_sealed(b, *parse_sealed(sb), "k", "", pb));
    ASSERT_TRUE(open_sealed(a, *parse_sealed(sa), "k", "", pa));
    EXPECT_EQ(pa, "A" + std::to_string(i));
    EXPECT_EQ(pb, "B" + std::to_string(i));
  }
}

TEST(AtRestCodec, Hex) {
  std::string out;
  EXPECT_EQ(to_hex(std::string("\x00\xff\x10", 3)), "00ff10");
  ASSERT_TRUE(from_hex("00FFa0", out));
  EXPECT_EQ(out, std::string("\x00\xff\xa0", 3));
  EXPECT_FALSE(from_hex("abc", out));
  EXPECT_FALSE(from_hex("zz", out));
}

// ---- keyring ---------------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/keel_keyring_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string kHexA(64, 'a');
const std::string kHexB = std::string(63, 'a') + "b";

std::unique_ptr<MasterKeyProvider> env_of(const std::string& value) {
  auto holder = std::make_shared<std::string>(value);
  return env_provider("KEEL_TEST_MASTER", [holder](const char*) { return holder->c_str(); });
}

TEST(Keyring, CreatesVersionOneAndReopens) {
  TempDir d;
  EXPECT_FALSE(Keyring::exists(d.path()));
  auto kr = Keyring::open(d.path(), *env_of(kHexA));
  ASSERT_TRUE(kr) << kr.error().message;
  EXPECT_TRUE(Keyring::exists(d.path()));
  EXPECT_EQ((*kr)->current_version(), 1u);
  EXPECT_EQ((*kr)->state(0), Keyring::State::kReadable);  // plaintext written before
  EXPECT_EQ((*kr)->state(2), Keyring::State::kUnknown);
  ASSERT_NE((*kr)->find(1), nullptr);
  auto bytes = (*kr)->find(1)->bytes;
  struct stat st {};
  ASSERT_EQ(::stat((*kr)->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The file holds the key only wrapped.
  std::ifstream in((*kr)->path());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find(to_hex(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()))),
            std::string::npos);
  kr->reset();
  auto again = Keyring::open(d.path(), *env_of(kHexA));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->find(1)->bytes, bytes);
}

TEST(Keyring, ChangingTheMasterKeyRewrapsEveryDataKey) {
  TempDir d;
  auto kr = Keyring::open(d.path(), *env_of(kHexA));
  ASSERT_TRUE(kr);
  ASSERT_TRUE((*kr)->rotate());
  const auto v1 = (*kr)->find(1)->bytes, v2 = (*kr)->find(2)->bytes;
  auto same = (*kr)->change_master(*env_of(kHexA));
  ASSERT_FALSE(same);
  EXPECT_NE(same.error().message.find("is the one in use"), std::string::npos) << same.error().message;
  auto bad = (*kr)->change_master(*env_of("abc"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("not 64 hex digits"), std::string::npos) << bad.error().message;
  ASSERT_TRUE((*kr)->change_master(*env_of(kHexB)));
  ASSERT_TRUE((*kr)->rotate());  // later writes of the file use the new master key too
  const auto v3 = (*kr)->find(3)->bytes;
  kr->reset();
  auto old = Keyring::open(d.path(), *env_of(kHexA));
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message.find("does not open data key version 1"), std::string::npos);
  auto again = Keyring::open(d.path(), *env_of(kHexB));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->find(1)->bytes, v1);  // the same data keys: no data is rewritten
  EXPECT_EQ((*again)->find(2)->bytes, v2);
  EXPECT_EQ((*again)->find(3)->bytes, v3);
  EXPECT_EQ((*again)->current_version(), 3u);
}

TEST(Keyring, WrongMasterKeyRefusedWithTheSource) {
  TempDir d;
  ASSERT_TRUE(Keyring::open(d.path(), *env_of(kHexA)));
  auto kr = Keyring::open(d.path(), *env_of(kHexB));
  ASSERT_FALSE(kr);
  EXPECT_NE(kr.error().message.find("does not open data key version 1"), std::string::npos) << kr.error().message;
  EXPECT_NE(kr.error().message.find("KEEL_TEST_MASTER"), std::string::npos) << kr.error().message;
}

TEST(Keyring, MasterKeySourcesValidated) {
  TempDir d;
  auto bad = Keyring::open(d.path(), *env_of("abc"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("is not 64 hex digits (it has 3 characters)"), std::string::npos)
      << bad.error().message;
  auto unset = Keyring::open(d.path(), *env_provider("KEEL_TEST_NOT_SET", [](const char*) -> const char* {
                               return nullptr;
                             }));
  ASSERT_FALSE(unset);
  EXPECT_NE(unset.error().message.find("security.at_rest.key_env: the environment variable KEEL_TEST_NOT_SET is not set"),
            std::string::npos)
      << unset.error().message;
  auto missing = key_file_provider(d.path() + "/nope")->master_key();
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("security.at_rest.key_file: cannot read"), std::string::npos);
  const std::string f = d.path() + "/master.key";
  std::ofstream(f) << kHexA << "\n";
  ::chmod(f.c_str(), 0644);
  auto open_mode = key_file_provider(f)->master_key();
  ASSERT_FALSE(open_mode);
  EXPECT_NE(open_mode.error().message.find("readable by group or others (mode 644)"), std::string::npos)
      << open_mode.error().message;
  ::chmod(f.c_str(), 0600);
  auto ok = key_file_provider(f)->master_key();
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ((*ok)[0], 0xaa);
  std::ofstream(f, std::ios::binary | std::ios::trunc) << std::string(32, '\x05');  // 32 raw bytes
  auto raw = key_file_provider(f)->master_key();
  ASSERT_TRUE(raw);
  EXPECT_EQ((*raw)[31], 0x05);
}

TEST(Keyring, RotateRetireAndReasons) {
  TempDir d;
  auto kr = *Keyring::open(d.path(), *env_of(kHexA));
  auto v2 = kr->rotate();
  ASSERT_TRUE(v2);
  EXPECT_EQ(*v2, 2u);
  EXPECT_EQ(kr->current_version(), 2u);
  EXPECT_NE(kr->find(1)->bytes, kr->find(2)->bytes);
  auto cur = kr->retire(2);
  ASSERT_FALSE(cur);
  EXPECT_NE(cur.error().message.find("version 2 is the current key"), std::string::npos);
  ASSERT_TRUE(kr->retire(1));
  EXPECT_EQ(kr->find(1), nullptr);
  EXPECT_EQ(kr->state(1), Keyring::State::kRetired);
  EXPECT_EQ(kr->unreadable_reason(1), "at-rest key version 1 is retired (keel keys retire 1); its key was deleted");
  EXPECT_NE(kr->unreadable_reason(9).find("at-rest key version 9 is unknown to this node's keyring"),
            std::string::npos);
  EXPECT_FALSE(kr->retire(1));  // already
  EXPECT_FALSE(kr->retire(5));  // unknown
  ASSERT_TRUE(kr->retire(0));   // plaintext
  auto bytes2 = kr->find(2)->bytes;
  kr.reset();
  auto again = *Keyring::open(d.path(), *env_of(kHexA));
  EXPECT_EQ(again->current_version(), 2u);
  EXPECT_EQ(again->state(0), Keyring::State::kRetired);
  EXPECT_EQ(again->state(1), Keyring::State::kRetired);
  EXPECT_EQ(again->find(2)->bytes, bytes2);
  auto vs = again->versions();
  ASSERT_EQ(vs.size(), 3u);
  EXPECT_TRUE(vs[2].current);
}

TEST(Keyring, DamagedFileNamesTheLine) {
  TempDir d;
  ASSERT_TRUE(Keyring::open(d.path(), *env_of(kHexA)));
  const std::string p = d.path() + "/" + Keyring::kFileName;
  std::ofstream(p, std::ios::app) << "key x readable\n";
  auto kr = Keyring::open(d.path(), *env_of(kHexA));
  ASSERT_FALSE(kr);
  EXPECT_NE(kr.error().message.find("is damaged at line 4"), std::string::npos) << kr.error().message;
}

TEST(Keyring, RewrapProgress) {
  TempDir d;
  auto kr = *Keyring::open(d.path(), *env_of(kHexA));
  EXPECT_FALSE(kr->rewrap_progress().complete);  // no driver yet
  unsigned a = kr->register_rewrap_driver(), b = kr->register_rewrap_driver();
  kr->rewrap_started(a, 1, 2);
  kr->rewrap_started(b, 1, 0);
  EXPECT_FALSE(kr->rewrap_progress().complete);
  EXPECT_EQ(kr->rewrap_progress().partitions_pending, 2u);
  kr->rewrap_partition_done(a);
  kr->rewrap_partition_done(a);
  EXPECT_TRUE(kr->rewrap_progress().complete);
  ASSERT_TRUE(kr->rotate());
  EXPECT_FALSE(kr->rewrap_progress().complete);  // drivers are on an older target
}

}  // namespace
}  // namespace keel::security::at_rest
