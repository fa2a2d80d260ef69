"""The full-width rehearsal (scripts/rehearse): a teacher with ViT-g/14's exact
widths and real heads, depth cut, serving ViT-S/14, ViT-B/14 and ViT-L/14
students at their exact widths (depth cut likewise) in prototypes and features
mode, a few steps at the main resolution and then a few in the
high-resolution phase, on the CPU. Each process's peak resident set (wait4's
ru_maxrss) and step times are printed, and each student's peak is compared
with `distill student --plan`'s CPU figure for its recipe (fails beyond
--tolerance).

The students' recipes are the shipped paper recipes (recipes/vit{s,b,l}14.yaml)
with only these changes: model.depth, the data section (Fashion-MNIST, blocks
of one step's batch), train.batch / steps / targets, hires.steps, schedule
lengths cut to fit the steps, and no periodic checkpoints. Their crops
(2 x 224 px, 8 x 98 px), heads, losses and the hires phase (518 px) are as
shipped. The teacher's weights are random (tools/random_teacher.py).

usage: /usr/bin/python3 bench/rehearse.py --bin build/bin/distill [--out out/rehearse] [--depth 2] [--batch 2]
           [--steps 2] [--hires-steps 2] [--sizes s,b,l] [--modes prototypes,features] [--port 47681]
"""
import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "idx:/usr/share/datasets/fashion-mnist,split=train"
NAMES = {"s": "ViT-S/14", "b": "ViT-B/14", "l": "ViT-L/14"}
GIB = 1 << 30


def log(msg):
    print(msg, flush=True)


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) << 10
    return f"{model}, {os.cpu_count()} cores, {mem / GIB:.0f} GiB, {platform.system()} {platform.release()}"


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def mem_available():
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) << 10


def teacher_files(a):
    """The random teacher (generated once per depth and kept)."""
    models = os.path.join(a.out, "models")
    os.makedirs(models, exist_ok=True)
    backbone = os.path.join(models, f"vitg14-depth{a.depth}.safetensors")
    heads = os.path.join(models, "vitg14-heads.safetensors")
    if not (os.path.exists(backbone) and os.path.exists(heads)):
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools/random_teacher.py"), backbone, heads,
                        "--depth", str(a.depth)], check=True)
    return backbone, heads


def student_recipe(a, size, mode, heads, path):
    r = yaml.safe_load(open(os.path.join(ROOT, f"recipes/vit{size}14.yaml")))
    r["data"] = {"dataset": DATASET, "seed": 0, "block_size": a.batch, "loader_threads": 1}
    r["model"]["depth"] = a.depth
    t = r["train"]
    t.update({"targets": mode, "batch": a.batch, "steps": a.steps})
    if mode == "prototypes":
        t["teacher_heads"] = heads
        t.pop("teacher_dim", None)
    else:
        t["teacher_dim"] = 1536
        t.pop("teacher_heads", None)
    # Schedule lengths that fit a few steps (the shipped ones are longer than the run).
    t["teacher_temp_warmup"] = min(t.get("teacher_temp_warmup", 0), a.steps)
    r["optim"]["warmup"] = min(r["optim"].get("warmup", 0), a.steps)
    r["checkpoint"] = {"every_steps": 0, "every_minutes": 0, "keep": 1}
    r["hires"]["steps"] = a.hires_steps
    if "warmup" in r["hires"]:
        r["hires"]["warmup"] = min(r["hires"]["warmup"], a.hires_steps)
    yaml.safe_dump(r, open(path, "w"), sort_keys=False)
    return r


def teacher_recipe(student, mode, backbone, heads, path):
    r = {"data": student["data"], "crops": student["crops"],
         "teacher": {"weights": backbone, "target": mode, "batch": 4, "cache_mb": 512, "codec": "f32",
                     "workers": 1}}
    if mode == "prototypes":
        r["teacher"]["heads"] = heads
    yaml.safe_dump(r, open(path, "w"), sort_keys=False)


def plan(a, recipe):
    """--plan's CPU and GPU peaks (bytes) and its table."""
    out = subprocess.run([a.bin, "student", "--plan", "--recipe", recipe], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"rehearse: --plan failed: {out.stderr.strip()}")
    m = re.search(r"peak per rank: CPU ([\d.]+) (GiB|MiB), GPU ([\d.]+) (GiB|MiB)", out.stdout)
    scale = {"GiB": GIB, "MiB": 1 << 20}
    return float(m.group(1)) * scale[m.group(2)], float(m.group(3)) * scale[m.group(4)], out.stdout


def wait_rusage(proc):
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_maxrss << 10, ru.ru_utime + ru.ru_stime


def steps_of(metrics):
    """Per resolution: the last step's seconds and its wait for targets."""
    out = {}
    with open(metrics) as f:
        for line in f:
            m = json.loads(line)
            if "resolution" in m:
                out[m["resolution"]] = (m["seconds"], m["target_wait_s"], m["seconds"] - m["target_wait_s"])
    return out


def run_student(a, size, mode, recipe, endpoint, out_dir):
    planned_cpu, planned_gpu, table = plan(a, recipe)
    with open(os.path.join(out_dir, "plan.txt"), "w") as f:
        f.write(table)
    avail = mem_available()
    if planned_cpu > 0.9 * avail:
        sys.exit(f"rehearse: {NAMES[size]} {mode} plans {planned_cpu / GIB:.2f} GiB, {avail / GIB:.2f} GiB available: "
                 "lower --batch or free memory")
    t0 = time.time()
    with open(os.path.join(out_dir, "student.log"), "w") as logf:
        p = subprocess.Popen([a.bin, "student", "--recipe", recipe, "--teachers", endpoint, "--out", out_dir,
                              "--quiet"], stdout=logf, stderr=subprocess.STDOUT)
        peak, cpu_s = wait_rusage(p)
    wall = time.time() - t0
    if p.returncode:
        sys.exit(f"rehearse: {NAMES[size]} {mode} exited {p.returncode}; see {out_dir}/student.log")
    steps = steps_of(os.path.join(out_dir, "metrics.jsonl"))
    for ck in os.listdir(os.path.join(out_dir, "checkpoints")):  # gigabytes each: not needed
        os.remove(os.path.join(out_dir, "checkpoints", ck))
    return {"mode": mode, "student": NAMES[size], "plan_cpu": planned_cpu, "plan_gpu": planned_gpu, "peak": peak,
            "diff": peak / planned_cpu - 1, "steps": steps, "wall": wall, "cpu_s": cpu_s}


def run_mode(a, mode, backbone, heads, rows, teachers):
    work = os.path.join(a.out, mode)
    os.makedirs(work, exist_ok=True)
    endpoint = f"tcp://127.0.0.1:{a.port}"
    recipes = {}
    for size in a.sizes:
        recipes[size] = os.path.join(work, f"vit{size}14.yaml")
        r = student_recipe(a, size, mode, heads, recipes[size])
    teacher_recipe(r, mode, backbone, heads, os.path.join(work, "teacher.yaml"))
    tlog = open(os.path.join(work, "teacher.log"), "w")
    teacher = subprocess.Popen([a.bin, "teacher", "--recipe", os.path.join(work, "teacher.yaml"), "--listen", endpoint],
                               stdout=tlog, stderr=subprocess.STDOUT)
    try:
        for size in a.sizes:
            log(f"== {mode}: {NAMES[size]} (teacher at {endpoint})")
            out_dir = os.path.join(work, f"vit{size}14")
            os.makedirs(out_dir, exist_ok=True)
            for f in ("metrics.jsonl",):
                if os.path.exists(os.path.join(out_dir, f)):
                    os.remove(os.path.join(out_dir, f))
            row = run_student(a, size, mode, recipes[size], endpoint, out_dir)
            rows.append(row)
            log(format_row(a, row))
    finally:
        teacher.send_signal(signal.SIGTERM)
        peak, cpu_s = wait_rusage(teacher)
        tlog.close()
    text = open(os.path.join(work, "teacher.log")).read()
    computed = [int(x) for x in re.findall(r"computed=(\d+)", text)]
    teachers.append({"mode": mode, "peak": peak, "computed": max(computed) if computed else 0, "cpu_s": cpu_s})


def format_row(a, r):
    cells = []
    for res in (224, 518):
        if res in r["steps"]:
            sec, wait, own = r["steps"][res]
            cells.append(f"{own:6.2f} s + {wait:5.2f} s")
        else:
            cells.append(f"{'-':>17}")
    ok = "ok" if abs(r["diff"]) <= a.tolerance else "FAIL"
    return (f"| {r['mode']:<10} | {r['student']:<8} | {r['plan_cpu'] / GIB:8.2f} | {r['peak'] / GIB:8.2f} | "
            f"{100 * r['diff']:+6.1f} % {ok:<4} | {cells[0]} | {cells[1]} | {r['plan_gpu'] / GIB:8.2f} | "
            f"{r['wall']:6.0f} |")


HEADER = ("| mode       | student  | plan CPU GiB | peak RSS GiB | difference | step at 224 px: own + wait | "
          "step at 518 px: own + wait | plan GPU GiB | wall s |\n"
          "| ---------- | -------- | -----------: | -----------: | ---------: | -------------------------: | "
          "-------------------------: | -----------: | -----: |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--out", default=os.path.join(ROOT, "out/rehearse"))
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--hires-steps", type=int, default=2)
    p.add_argument("--sizes", default="s,b,l")
    p.add_argument("--modes", default="prototypes,features")
    p.add_argument("--port", type=int, default=47681)
    p.add_argument("--tolerance", type=float, default=0.15)
    a = p.parse_args()
    a.sizes = a.sizes.split(",")
    os.makedirs(a.out, exist_ok=True)
    started, load_start = time.time(), load_average()
    backbone, heads = teacher_files(a)
    log(f"rehearse: teacher ViT-g/14 at its widths (1536 wide, 24 heads, fused SwiGLU 4096, 4 registers, 37x37 "
        f"positions, patch 14) with DINO/iBOT heads (2048 wide, 3 layers, bottlenecks 384 and 256, 131072 "
        f"prototypes); the ONLY change: depth {a.depth} instead of 40. Students ViT-S/B/L/14 at their widths, depth "
        f"{a.depth} instead of 12/12/24. Per-rank batch {a.batch}, {a.steps} steps at 224 px, then {a.hires_steps} "
        f"at 518 px; {os.environ.get('OMP_NUM_THREADS', os.cpu_count())} OpenMP threads.")
    log(HEADER)
    rows, teachers = [], []
    for mode in a.modes.split(","):
        run_mode(a, mode, backbone, heads, rows, teachers)
    elapsed = time.time() - started
    lines = [f"Rehearsal of {datetime.date.today().isoformat()} on {machine()}; "
             f"`scripts/rehearse` ({' '.join(sys.argv[1:])}), {elapsed / 60:.1f} minutes, load average "
             f"{load_start} at the start and {load_average()} at the end (other builds share the cores: step times "
             "vary with them; memory does not).", "", HEADER]
    lines += [format_row(a, r) for r in rows]
    lines.append("")
    for t in teachers:
        shared = " (each once: the later students took them from its cache)" \
            if t["computed"] == a.steps + a.hires_steps and len(a.sizes) > 1 else ""
        lines.append(f"Teacher ({t['mode']}): peak RSS {t['peak'] / GIB:.2f} GiB, {t['computed']} blocks of "
                     f"{a.batch} samples computed{shared}, {t['cpu_s'] / max(t['computed'], 1):.1f} CPU-seconds per "
                     "block (224 and 518 px together).")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    log("\n" + text)
    bad = [r for r in rows if abs(r["diff"]) > a.tolerance]
    if bad:
        sys.exit(f"rehearse: FAIL: {len(bad)} student(s) off their plan by more than {100 * a.tolerance:.0f} %")
    log(f"rehearse: every student's peak RSS within {100 * a.tolerance:.0f} % of its plan ({a.out}/results.md)")


if __name__ == "__main__":
    main()
