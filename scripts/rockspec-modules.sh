#!/bin/sh
# Prints the rockspec's build.modules entries for lua/ and csrc/ (paste into
# the rockspec when files are added; spec/unit/rockspec_spec.lua checks it).
cd "$(dirname "$0")/.." || exit 1
find lua -name '*.lua' | sort | while read -r f; do
  m=$(echo "$f" | sed -e 's#^lua/##' -e 's#\.lua$##' -e 's#/init$##' -e 's#/#.#g')
  printf '    ["%s"] = "%s",\n' "$m" "$f"
done
printf '    ["ugen.core"] = {\n      sources = {\n'
for f in csrc/*.c; do printf '        "%s",\n' "$f"; done
printf '      },\n'
