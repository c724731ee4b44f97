#!/usr/bin/env bash
# Render a jem report in headless Chromium (Debian's `chromium`) and keep a
# full-page screenshot beside it, so the page can be checked as a person sees
# it. Also checks that the rendered DOM holds every section, table and
# picture. Usage: scripts/report_screenshot.sh REPORT_DIR [WIDTH]
set -euo pipefail
dir=${1:?usage: scripts/report_screenshot.sh REPORT_DIR [WIDTH]}
width=${2:-1200}
JEM_DEPS_EXTRA="chromium" "$(dirname "$0")/deps.sh"
page=$(realpath "$dir/report.html")
[ -f "$page" ] || { echo "report_screenshot: $page missing" >&2; exit 1; }
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$(mktemp -d)")
dom=$(chromium "${flags[@]}" --dump-dom "file://$page" 2>/dev/null)
fail=0
for want in "Summary" "Model" "Accuracy and calibration" "Out-of-distribution detection" "Adversarial robustness"; do
    grep -q "$want" <<<"$dom" || { echo "report_screenshot: section '$want' missing" >&2; fail=1; }
done
imgs=$(grep -o 'src="data:image/png;base64,' <<<"$dom" | wc -l || true)
tables=$(grep -o '<table' <<<"$dom" | wc -l || true)
missing=$(grep -o 'class="missing"' <<<"$dom" | wc -l || true)
echo "report_screenshot: $tables tables, $imgs embedded pictures, $missing missing parts"
[ "$imgs" -ge 5 ] && [ "$tables" -ge 3 ] && [ "$missing" -eq 0 ] || fail=1
# full height: render tall, then the page's own height decides what is kept
chromium "${flags[@]}" --window-size="$width,6000" --screenshot="$dir/report.png" "file://$page" 2>/dev/null
echo "report_screenshot: $dir/report.png"
exit $fail
