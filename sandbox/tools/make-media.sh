#!/bin/sh
# Regenerates the small media files the sandbox serves (sandbox/static/).
# Needs ffmpeg (not a project dependency: the generated files are committed).
# sample.mp4: 2 s, 180x320 (9:16), H.264 baseline + AAC mono, faststart (~23 KB)
# thumbnail.jpg: one 180x320 frame; image.png: 128x128 (playground image result)
set -eu
cd "$(dirname "$0")/../static"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=180x320:rate=15:duration=2" \
  -f lavfi -i "sine=frequency=440:duration=2:sample_rate=22050" \
  -c:v libx264 -profile:v baseline -pix_fmt yuv420p -crf 35 -preset veryslow \
  -c:a aac -b:a 24k -ac 1 -movflags +faststart -shortest sample.mp4
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=180x320:rate=1:duration=1" \
  -frames:v 1 -q:v 8 thumbnail.jpg
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=128x128:rate=1:duration=1" \
  -frames:v 1 image.png
ls -l sample.mp4 thumbnail.jpg image.png
