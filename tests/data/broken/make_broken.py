#!/usr/bin/python3
"""Writes the deliberately broken image files of this folder (committed).

Each must be skipped and counted by the data pipeline, never crash it:
truncated JPEG and PNG, a zero-byte file, random bytes, a PNG whose header
claims 100000x100000 pixels (valid CRC), a PNG with a corrupt IDAT CRC, and
a text file named .jpg. good.png is the one readable file, as a control.
"""
import os
import random
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "..", "ref", "data")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main():
    rnd = random.Random(4)
    jpg = open(os.path.join(REF, "in_chelsea.jpg"), "rb").read()
    png = open(os.path.join(REF, "in_coffee.png"), "rb").read()
    files = {
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": png[: len(png) // 2],
        "empty.jpg": b"",
        "random.jpg": bytes(rnd.getrandbits(8) for _ in range(2048)),
        "random_with_jpeg_magic.jpg": b"\xff\xd8\xff" + bytes(rnd.getrandbits(8) for _ in range(1024)),
        "bomb_100000x100000.png": b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b""),
        "bad_crc.png": png[:-40] + bytes(b ^ 0x5A for b in png[-40:-12]) + png[-12:],
        "not_an_image.jpg": b"this is a text file, not a JPEG\n",
    }
    for name, data in files.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    # A small valid control image (a 16x12 crop of the coffee PNG's pixels).
    from PIL import Image
    Image.open(os.path.join(REF, "in_coffee.png")).crop((0, 0, 16, 12)).save(os.path.join(HERE, "good.png"))


if __name__ == "__main__":
    main()
