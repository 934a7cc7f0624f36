# `make install [PREFIX=/usr/local] [DESTDIR=...]`: the library, header and pkg-config file
# (scripts/install.sh, docs/INSTALL.md). Everything else is cargo: see README.md.
PREFIX ?= /usr/local

install:
	scripts/install.sh --prefix $(PREFIX)

.PHONY: install
