#!/usr/bin/env bash
# The translation gate: fails when any zh_CN message is untranslated or fuzzy, and lists them.
#   docs/tools/translation_gate.sh [docs/locales/zh_CN/LC_MESSAGES [build/docs/gettext]]
# With the gettext folder, a catalog whose page no longer exists (no .pot) is reported as stale
# and skipped: delete it from git.
# msgfmt --statistics counts per catalog (sphinx-intl stat always exits 0); --check-format and
# --check-domain catch broken entries, --check-header is left out on purpose (Babel's header
# lacks fields msgfmt wants).
set -uo pipefail
dir=${1:-docs/locales/zh_CN/LC_MESSAGES}
pot_dir=${2:-}
status=0
catalogs=0
msgids() {  # the msgid lines of a catalog on stdin (header entry left out)
  awk '/^msgid /{p=1} /^msgstr /{p=0} p' | grep -v '^msgid ""$' | sed 's/^msgid //'
}
incomplete=0
while IFS= read -r -d '' po; do
  if [ -n "$pot_dir" ] && [ ! -f "$pot_dir/${po#"$dir"/}t" ]; then
    echo "STALE $po: its page no longer exists (no ${po#"$dir"/}t); delete the catalog"
    continue
  fi
  catalogs=$((catalogs + 1))
  if ! stats=$(LC_ALL=C msgfmt --check-format --check-domain --statistics -o /dev/null "$po" 2>&1); then
    echo "BROKEN $po:"
    echo "$stats" | sed 's/^/    /'
    status=1
    continue
  fi
  case "$stats" in
    *untranslated* | *fuzzy*)
      incomplete=$((incomplete + 1))
      status=1
      echo "INCOMPLETE $po: $stats"
      fuzzy=$(LC_ALL=C msgattrib --only-fuzzy --no-obsolete --no-wrap "$po" | msgids)
      missing=$(LC_ALL=C msgattrib --untranslated --no-fuzzy --no-obsolete --no-wrap "$po" | msgids)
      [ -n "$fuzzy" ] && echo "  fuzzy (the English changed; check and update the translation, then remove '#, fuzzy'):" &&
        echo "$fuzzy" | sed 's/^/    /'
      [ -n "$missing" ] && echo "  untranslated:" && echo "$missing" | sed 's/^/    /'
      ;;
  esac
done < <(find "$dir" -name '*.po' -print0 | sort -z)
if ((status)); then
  echo "translation gate: FAILED: $incomplete of $catalogs catalogs in $dir are incomplete."
  echo "Translate the messages listed above (docs/locales/zh_CN/LC_MESSAGES/<page>.po; the rules"
  echo "are in docs/glossary.md), then run scripts/docs.sh again."
else
  echo "translation gate: ok ($catalogs catalogs, every message translated)"
fi
exit $status
