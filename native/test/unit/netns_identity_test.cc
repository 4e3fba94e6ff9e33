// The namespace cookie that tells a real server's record from one of an
// earlier namespace with the same inode: stable for one namespace, different
// for another, read from a path without moving the calling thread.
#include "realserver/netns_identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "netns.h"

namespace l4lb::realserver {
namespace {

uint64_t own_namespace_inode() {
  struct stat st {};
  return ::stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

TEST(NetnsCookie, IsStableForTheCallersNamespaceAndTheSameThroughItsPath) {
  const NetnsCookieResult own = netns_cookie("");
  ASSERT_EQ(own.code, "") << own.message;
  EXPECT_NE(own.cookie, 0u);
  EXPECT_EQ(netns_cookie("").cookie, own.cookie);
  const NetnsCookieResult by_path = netns_cookie("/proc/self/ns/net");
  ASSERT_EQ(by_path.code, "") << by_path.message;
  EXPECT_EQ(by_path.cookie, own.cookie);
}

TEST(NetnsCookie, DiffersForAnotherNamespaceAndLeavesTheCallerWhereItWas) {
  const uint64_t inode_before = own_namespace_inode();
  const uint64_t own = netns_cookie("").cookie;
  test::NetNamespace ns("cookie");
  ASSERT_TRUE(ns.ok()) << ns.error();
  const NetnsCookieResult other = netns_cookie(ns.path());
  ASSERT_EQ(other.code, "") << other.message;
  EXPECT_NE(other.cookie, 0u);
  EXPECT_NE(other.cookie, own);
  EXPECT_EQ(netns_cookie(ns.path()).cookie, other.cookie);
  EXPECT_EQ(own_namespace_inode(), inode_before);
  EXPECT_EQ(netns_cookie("").cookie, own);
}

TEST(NetnsCookie, NamesTheFailureForAPathThatIsNoNamespace) {
  const NetnsCookieResult missing = netns_cookie("/run/netns/l4lb-no-such-namespace");
  EXPECT_EQ(missing.code, "ENETNS");
  EXPECT_NE(missing.message.find("/run/netns/l4lb-no-such-namespace"), std::string::npos);
  const NetnsCookieResult not_nsfs = netns_cookie("/proc/self/status");
  EXPECT_EQ(not_nsfs.code, "ENETNS");
  EXPECT_NE(not_nsfs.message.find("setns"), std::string::npos);
}

}  // namespace
}  // namespace l4lb::realserver
