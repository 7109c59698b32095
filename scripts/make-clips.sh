#!/usr/bin/env bash
# Test/demo helper: turns Fashion-MNIST frames into labelled camera clips, as vehicles' recorders would write them.
#
#   scripts/make-clips.sh DIR [--vehicles N] [--clips N] [--frames N] [--split train|test] [--offset N] [--fps N]
#
# Writes DIR/vehicle-{v}/ for v in 0..N-1, each with --clips clips of --frames consecutive frames (default 3 clips of 40),
# cycling through the containers a fleet's recorders produce: clip-{c}.mp4 (H.264, lossless), clip-{c}.mkv (FFV1),
# clip-{c}.h264 (raw H.264 stream) and clip-{c}/ (an image folder of PNGs, as dash cams write them). Each clip has a
# sidecar with one label per frame: clip-{c}.mp4.labels.csv ("frame,class") beside a video, labels.csv inside a folder.
# Vehicle v's clips take rows from (--offset + v*clips*frames) of the chosen split, so vehicles never share a frame.
# Needs ffmpeg and python3; reads $FLEETLEARN_DATA, else /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist).
set -euo pipefail
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
out="$1"; shift
vehicles=3 clips=3 frames=40 split=train offset=0 fps=5
while [ $# -gt 0 ]; do
  case "$1" in
    --vehicles) vehicles="$2"; shift 2 ;;
    --clips) clips="$2"; shift 2 ;;
    --frames) frames="$2"; shift 2 ;;
    --split) split="$2"; shift 2 ;;
    --offset) offset="$2"; shift 2 ;;
    --fps) fps="$2"; shift 2 ;;
    *) echo "make-clips.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$vehicles" "$clips" "$frames" "$offset" "$fps"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "make-clips.sh: '$n' is not a non-negative integer" >&2; exit 2; }
done
[ "$split" = train ] || [ "$split" = test ] || { echo "make-clips.sh: --split '$split': expected train or test" >&2; exit 2; }
command -v ffmpeg >/dev/null || { echo "make-clips.sh: ffmpeg is not installed (apt-get install -y ffmpeg)" >&2; exit 1; }
data="${FLEETLEARN_DATA:-/usr/share/datasets/fashion-mnist}"
prefix=$([ "$split" = train ] && echo train || echo t10k)
images="$data/$prefix-images-idx3-ubyte.gz" labels="$data/$prefix-labels-idx1-ubyte.gz"
[ -f "$images" ] && [ -f "$labels" ] || { echo "make-clips.sh: Fashion-MNIST not found in $data (apt-get install dataset-fashion-mnist, or set FLEETLEARN_DATA)" >&2; exit 1; }
mkdir -p "$out"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
"$PY" - "$out" "$vehicles" "$clips" "$frames" "$offset" "$fps" "$images" "$labels" <<'PYEOF'
import gzip, os, subprocess, sys
out, vehicles, clips, frames, offset, fps, images, labels = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7], sys.argv[8]
pixels = gzip.open(images).read()[16:]
classes = gzip.open(labels).read()[8:]
count = len(classes)
need = offset + vehicles * clips * frames
if need > count:
    sys.exit(f"make-clips.sh: {vehicles} vehicles x {clips} clips x {frames} frames from row {offset} need {need} rows; the split has {count}")
kinds = ["mp4", "mkv", "h264", "png"]
codec = {"mp4": ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-f", "mp4"], "mkv": ["-c:v", "ffv1", "-f", "matroska"],
         "h264": ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-f", "h264"]}
for v in range(vehicles):
    folder = os.path.join(out, f"vehicle-{v}")
    os.makedirs(folder, exist_ok=True)
    for c in range(clips):
        start = offset + (v * clips + c) * frames
        raw = pixels[start * 784:(start + frames) * 784]
        kind = kinds[c % len(kinds)]
        rows = "frame,class\n" + "".join(f"{i},{classes[start + i]}\n" for i in range(frames))
        src = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
               "-s", "28x28", "-r", str(fps), "-i", "pipe:0"]
        if kind == "png":
            clip = os.path.join(folder, f"clip-{c}")
            os.makedirs(clip, exist_ok=True)
            subprocess.run(src + [os.path.join(clip, "%05d.png")], input=raw, check=True)
            sidecar = os.path.join(clip, "labels.csv")
        else:
            clip = os.path.join(folder, f"clip-{c}.{kind}")
            # Written under a temporary name and renamed when complete, as a recorder that renames on close does.
            subprocess.run(src + codec[kind] + [clip + ".part"], input=raw, check=True)
            sidecar = clip + ".labels.csv"
        with open(sidecar, "w") as f:
            f.write(rows)
        if kind != "png":
            os.replace(clip + ".part", clip)
    print(f"{folder}: {clips} clips of {frames} frames (rows {offset + v * clips * frames}..{offset + (v + 1) * clips * frames - 1} of {count})")
PYEOF
