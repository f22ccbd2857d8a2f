"""Images and screenshots carried by posts and fact-checks.

`store` keeps image bytes content-addressed (sha256) under the data folder,
with size limits and decompression bombs refused; `hashing` computes the
perceptual hashes (PDQ and a 64-bit pHash) and their distances; `ocr` reads
the text in an image with Debian's Tesseract, in the language its script says;
`video` takes keyframes with ffmpeg and hashes them the same way; `matching`
compares a post's images with the fact-checked images and explains each
decision (the pair, both distances, the rule and its version); `processing`
does all of it for the posts of one ingest.

Pillow, pdqhash, imagehash and pytesseract are the `images` extra; they are
imported lazily so that the rest of FactBridge runs without them.
"""
