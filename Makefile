# virt-systemd: build, install and package. One command per format:
#
#   make                      the binaries as they ship, in target/dist (packaging/build-bins.sh:
#                             virt-systemd and the hook static, STATIC=0 for dynamic)
#   make install DESTDIR=DIR  install as packaging/install-manifest says (DESTDIR empty: /)
#   make deb                  target/debian/virt-systemd_VERSION-1_ARCH.deb (dpkg-deb)
#   make rpm                  target/rpm/RPMS/ARCH/virt-systemd-VERSION-1.ARCH.rpm (rpmbuild)
#   make man                  regenerate packaging/man/*.1 and packaging/completions/*
#   make check-packaging      the packaging checks (cargo test --test packaging)
#
# Arch Linux: packaging/arch/PKGBUILD (makepkg); it runs `make install` too.

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
PROFILE ?= release
# 0: link virt-systemd and virt-systemd-hook dynamically too (see packaging/build-bins.sh)
STATIC ?= 1
# where `make build` puts the binaries and `make install`, deb and rpm take them from
BINDIR ?= $(CARGO_TARGET_DIR)/dist
DESTDIR ?=
# @ZSH_COMPLETIONS@ of the manifest (Debian: /usr/share/zsh/vendor-completions)
ZSH_COMPLETIONS ?= /usr/share/zsh/site-functions
# extra packaging/install.sh options, e.g. --gzip-man --strip
INSTALL_FLAGS ?=

.PHONY: all build install deb rpm man check-packaging clean-packages

all: build

build:
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(CARGO_TARGET_DIR)" packaging/build-bins.sh \
		--profile $(PROFILE) --out "$(BINDIR)" $(if $(filter 0,$(STATIC)),--dynamic)

install:
	packaging/install.sh --bindir "$(BINDIR)" --destdir "$(DESTDIR)" \
		--zsh-completions "$(ZSH_COMPLETIONS)" $(INSTALL_FLAGS)

deb: build
	packaging/debian/build-deb.sh --bindir "$(BINDIR)" --out "$(CARGO_TARGET_DIR)/debian"

rpm: build
	packaging/rpm/build-rpm.sh --bindir "$(BINDIR)" --out "$(CARGO_TARGET_DIR)/rpm"

man:
	$(CARGO) run --quiet --example gen-docs -- packaging

check-packaging:
	$(CARGO) test --test packaging

clean-packages:
	rm -rf "$(CARGO_TARGET_DIR)/debian" "$(CARGO_TARGET_DIR)/rpm"
