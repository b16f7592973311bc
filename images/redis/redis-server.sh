#!/bin/sh
# redis-server as the official redis image has it: Redis compiled with protected mode off by default (see
# docker-library/redis: "unnecessary in context of Docker", ports are published explicitly). Debian's
# /usr/bin/redis-server keeps it on, so this adds --protected-mode no ahead of the caller's options when no config
# file is given; a later --protected-mode still wins. With a config file (first argument not an option), the file
# decides, and protected mode defaults to on where it does not say.
case "${1-}" in
	-v | --version | -h | --help | --test-memory | --check-system | -)
		exec /usr/bin/redis-server "$@" ;;
	'' | --*)
		exec /usr/bin/redis-server --protected-mode no "$@" ;;
	*)
		exec /usr/bin/redis-server "$@" ;;
esac
