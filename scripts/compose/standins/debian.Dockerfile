# Stand-in base: Debian bookworm (debootstrap --variant=minbase, then docker import), made only where Docker Hub
# cannot be reached. The import is tagged streamwreck-standin/bookworm-rootfs; this adds what every stand-in needs.
FROM streamwreck-standin/bookworm-rootfs:minbase-2
# Package scripts must not start daemons during a build (the build runs on the host's network).
# apt keeps no downloaded packages (as in Docker's official Debian images) and installs no recommends.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/90no-recommends \
    && printf '%s\n' \
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' > /etc/apt/apt.conf.d/docker-clean
ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
CMD ["bash"]
