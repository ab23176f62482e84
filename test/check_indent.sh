#!/usr/bin/env bash
# Check (or, with --fix, apply) pgindent formatting of src/ and its folders.
#
# PostgreSQL's pgindent is a Perl wrapper around pg_bsd_indent that is not
# packaged by Debian; pg_bsd_indent is (package pg-bsd-indent).  This runs
# pg_bsd_indent with pgindent's options and the project's typedefs.list,
# then applies pgindent's one post-processing rule that matters for our
# code: a function definition's return type stays "type *" on its own line.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FIX=0
[[ ${1:-} == --fix ]] && FIX=1

command -v pg_bsd_indent >/dev/null ||
	{ echo "check_indent.sh: pg_bsd_indent is missing (apt-get install pg-bsd-indent)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
while IFS= read -r f; do
	out="$tmp/${f#"$REPO"/src/}"
	mkdir -p "$(dirname "$out")"
	pg_bsd_indent -bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 \
		-nfc1 -i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4 \
		-U"$REPO/typedefs.list" "$f" "$out"
	# "char\t   *" alone on a line (a function's return type) -> "char *"
	sed -i -E 's/^((const |struct |static |extern )*[A-Za-z_][A-Za-z0-9_]*)[ \t]+\*$/\1 */' "$out"
	if ! cmp -s "$f" "$out"; then
		if [[ $FIX == 1 ]]; then
			cp "$out" "$f"
			echo "reformatted ${f#"$REPO"/}"
		else
			diff -u "$f" "$out" | sed "s|$tmp/||" || true
			status=1
		fi
	fi
done < <(find "$REPO/src" -name '*.[ch]' | sort)
[[ $status == 0 ]] || echo "check_indent.sh: formatting differs from pgindent style; run bash test/check_indent.sh --fix" >&2
exit $status
