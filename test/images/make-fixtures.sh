#!/bin/sh
# Real package databases for the image-inventory tests, written by the real tools:
#   rpm/      an rpm database (rpmdb.sqlite) written by Debian's rpm 4.18 installing two
#             packages built with rpmbuild, and what `rpm -qa` reads from it (rpm-qa.txt)
#   python/   Python distributions installed by pip (dist-info directories, as pip writes them)
#   alpine/   an apk installed database, in apk's documented format (no apk on Debian to write one)
# The dpkg database is not here: the tests use this machine's own /var/lib/dpkg/status and judge
# it with dpkg-query. Run from anywhere: sh test/images/make-fixtures.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- rpm: two tiny source packages (one with an epoch), each building itself and a -libs subpackage
mkdir -p "$work/SPECS"
for spec in "tinyssl 3.0.7 24.el9 1" "tinycurl 7.76.1 26.el9 0"; do
  set -- $spec
  cat > "$work/SPECS/$1.spec" <<SPEC
Name: $1
Version: $2
Release: $3
Epoch: $4
Summary: Airlock test package
License: MIT
BuildArch: noarch
%description
Airlock test package.
%package libs
Summary: Airlock test subpackage
%description libs
Airlock test subpackage.
%prep
%build
%install
mkdir -p %{buildroot}/usr/share/$1
echo $1 > %{buildroot}/usr/share/$1/README
mkdir -p %{buildroot}/usr/lib/$1
echo $1 > %{buildroot}/usr/lib/$1/lib
%files
/usr/share/$1/README
%files libs
/usr/lib/$1/lib
SPEC
  rpmbuild --quiet --define "_topdir $work" -bb "$work/SPECS/$1.spec"
done
rm -rf "$here/rpm" && mkdir -p "$here/rpm/root"
rpm --root "$here/rpm/root" --dbpath /var/lib/rpm --initdb
rpm --root "$here/rpm/root" --dbpath /var/lib/rpm -i --justdb --nodeps --noscripts --ignorearch "$work"/RPMS/noarch/*.rpm
rpm --root "$here/rpm/root" --dbpath /var/lib/rpm -qa --qf '%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH} %{SOURCERPM}\n' | sort > "$here/rpm/rpm-qa.txt"
# Only the database is kept (rpm may leave lock and -shm files behind).
find "$here/rpm/root" -type f ! -name rpmdb.sqlite -delete

# --- python: real wheels installed by pip into a site-packages directory
rm -rf "$here/python" && mkdir -p "$here/python"
pip install --quiet --no-deps --no-compile --target "$here/python/site-packages" \
  --index-url file:///opt/pypi/simple urllib3==2.8.0 idna==3.20
# Keep the metadata pip wrote; the code itself is not needed.
find "$here/python/site-packages" -mindepth 1 -maxdepth 1 ! -name '*.dist-info' -exec rm -rf {} +
find "$here/python/site-packages" -name RECORD -delete

# --- alpine: the installed database of apk (apk-package(5), "P:" name, "V:" version, "A:" arch, "o:" origin)
mkdir -p "$here/alpine"
cat > "$here/alpine/installed" <<APK
C:Q1hX2kEGcvQ/1VRyoRB3QTzUMbBrw=
P:musl
V:1.2.5-r0
A:x86_64
S:411034
I:647168
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1712683201
c:4fe5bae8e8e6c8f9b4b1f6c3d7f2f8b8e6a8c5f2
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1c6Fb4Vq2F7n6cA3kQkFhYpG1o5k=

C:Q1wVbUhyGu5ry8WbVnHa5LWmUdScI=
P:libcrypto3
V:3.3.0-r2
A:x86_64
S:1740963
I:4960256
T:Crypto library from openssl
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Ariadne Conner <ariadne@dereferenced.org>
t:1715864711
c:ab8dcbf5b22d6d6a1b1e3b8e8e2bf9d3b5b3b2b1
D:so:libc.musl-x86_64.so.1
p:so:libcrypto.so.3=3
F:usr
F:usr/lib
R:libcrypto.so.3

C:Q1p7UlgZ7Pw7Jj9fpQV3A0Kp4BfFc=
P:busybox
V:1.36.1-r28
A:x86_64
S:510180
I:950272
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1715864711
c:8f1b3a2d0f5c7e1b9a4d6c2e8f0b1a3c5d7e9f0b
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox

APK
cat > "$here/alpine/os-release" <<OS
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.0
PRETTY_NAME="Alpine Linux v3.20"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
OS
echo "fixtures written to $here"
