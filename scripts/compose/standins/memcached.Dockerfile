# Stand-in for memcached:1.6.32-alpine: Debian bookworm's memcached (1.6.18), run as the memcache user as the real
# image does, with `nc` for the compose health check. Never pushed.
FROM streamwreck-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y memcached netcat-openbsd \
    && rm -rf /var/lib/apt/lists/*
USER memcache
EXPOSE 11211
CMD ["memcached"]
