#!/usr/bin/python3
"""Validation of deploy/: the Kubernetes manifests, the Slurm scripts, the
local launcher's demo config and the Dockerfiles (no schema validator or
hadolint installs from Debian, so this checks what they would and the
cross-references between files).

  check_deploy.py CASE SOURCE_DIR DISTILL
  CASE: k8s | slurm | docker

Every `--flag` given to `distill SUB` anywhere in deploy/ must appear in
`distill SUB --help`. Prints one line per check; exit 1 when one fails.
"""
import os
import re
import subprocess
import sys

import yaml

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures += 1
    return cond


_help_cache = {}


def help_flags(distill, sub):
    if sub not in _help_cache:
        out = subprocess.run([distill, sub, "--help"], capture_output=True, text=True).stdout
        _help_cache[sub] = set(re.findall(r"^\s+(--[a-z0-9-]+)", out, re.M))
    return _help_cache[sub]


def check_flags(distill, sub, args, where):
    flags = [a for a in args if a.startswith("--")]
    known = help_flags(distill, sub)
    unknown = [f for f in flags if f not in known]
    check(flags and not unknown, f"{where}: distill {sub} flags {' '.join(flags)} all exist"
          + (f" (unknown: {' '.join(unknown)})" if unknown else ""))


def flag_value(args, flag):
    return args[args.index(flag) + 1] if flag in args else None


# ---------------------------------------------------------------- Kubernetes

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kustomize_tree(dirpath, seen=None):
    """Resources, generators and patches of a kustomization and its bases:
    (objects, configmap names, kustomization files)."""
    kfile = os.path.join(dirpath, "kustomization.yaml")
    k = load_docs(kfile)[0]
    objects, configmaps = [], []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(dirpath, r))
        check(os.path.exists(p), f"{kfile}: resource {r} exists")
        if os.path.isdir(p):
            check(os.path.exists(os.path.join(p, "kustomization.yaml")), f"{p}: has a kustomization.yaml")
            o, c = kustomize_tree(p)
            objects += o
            configmaps += c
        elif os.path.exists(p):
            objects += load_docs(p)
    for g in k.get("configMapGenerator", []):
        configmaps.append(g["name"])
    for patch in k.get("patches", []):
        p = os.path.join(dirpath, patch["path"])
        if check(os.path.exists(p), f"{kfile}: patch {patch['path']} exists"):
            for d in load_docs(p):
                check(any(o["kind"] == d["kind"] and o["metadata"]["name"] == d["metadata"]["name"] for o in objects),
                      f"{p}: patches {d['kind']}/{d['metadata']['name']}, which the bases define")
    for rep in k.get("replicas", []):
        check(any(o["metadata"]["name"] == rep["name"] for o in objects), f"{kfile}: replicas names {rep['name']}")
    return objects, configmaps


def apply_overlay(dirpath, objects):
    """The overlay's effect on its base, as far as the checks need it: env
    values from the patches and the replica count."""
    k = load_docs(os.path.join(dirpath, "kustomization.yaml"))[0]
    reps = {r["name"]: r["count"] for r in k.get("replicas", [])}
    env_patch = {}
    for patch in k.get("patches", []):
        for d in load_docs(os.path.join(dirpath, patch["path"])):
            for c in d["spec"]["template"]["spec"]["containers"]:
                env_patch[c["name"]] = {e["name"]: e["value"] for e in c.get("env", [])}
    out = []
    for o in objects:
        o = yaml.safe_load(yaml.safe_dump(o))  # a copy
        if o["metadata"]["name"] in reps:
            o["spec"]["replicas"] = reps[o["metadata"]["name"]]
        if o["kind"] in ("Deployment", "StatefulSet"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env", []):
                    if e["name"] in env_patch.get(c["name"], {}):
                        e["value"] = env_patch[c["name"]][e["name"]]
        out.append(o)
    return out


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def expand(arg, env):
    return re.sub(r"\$\((\w+)\)", lambda m: str(env.get(m.group(1), m.group(0))), arg)


def check_workload(o, configmaps, distill, src):
    name = f"{o['kind']}/{o['metadata']['name']}"
    spec, tpl = o["spec"], o["spec"]["template"]
    sel = spec["selector"]["matchLabels"]
    check(all(tpl["metadata"]["labels"].get(k) == v for k, v in sel.items()),
          f"{name}: selector {sel} matches the pod template's labels")
    pod = tpl["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    mounted = set()
    for c in pod["containers"]:
        image = c["image"]
        check(":" in image and not image.endswith(":latest"), f"{name}: image {image} has a tag, not latest")
        env = env_of(c)
        refs = set(re.findall(r"\$\((\w+)\)", " ".join(c.get("args", []))))
        check(refs <= set(env), f"{name}: every $(VAR) in args is in env ({', '.join(sorted(refs))})")
        args = c["args"]
        check_flags(distill, args[0], args[1:], name)
        for m in c.get("volumeMounts", []):
            mounted.add(m["name"])
            check(m["name"] in volumes or m["name"] in claims, f"{name}: mount {m['name']} has a volume")
        for ref in c.get("envFrom", []):
            cm = ref.get("configMapRef", {}).get("name")
            if cm:
                check(cm in configmaps, f"{name}: ConfigMap {cm} is generated by the kustomization")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if args[0] == "teacher":
            listen = flag_value(args, "--listen")
            check(listen and listen.endswith(f":{ports.get('zmq')}"), f"{name}: --listen {listen} is the zmq port")
            check("--id" in args, f"{name}: --id set (a distinct rendezvous key per pod)")
        if args[0] == "student":
            mport = flag_value(args, "--metrics-port")
            ann = tpl["metadata"].get("annotations", {})
            check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == mport
                  and str(ports.get("metrics")) == mport,
                  f"{name}: Prometheus annotations, containerPort and --metrics-port agree ({mport})")
            check(flag_value(args, "--metrics-addr") == "0.0.0.0", f"{name}: metrics listen on all addresses")
            check(flag_value(args, "--resume") == "auto", f"{name}: --resume auto (a restarted pod continues)")
            recipe = expand(flag_value(args, "--recipe"), env)
            check(recipe.startswith("/opt/distill/recipes/") and
                  os.path.exists(os.path.join(src, "recipes", os.path.basename(recipe))),
                  f"{name}: recipe {recipe} is one of the image's recipes/")
            world = env.get("WORLD")
            check(str(spec.get("replicas")) == str(world), f"{name}: replicas {spec.get('replicas')} == WORLD {world}")
            rank = [e for e in c["env"] if e["name"] == "RANK"]
            check(rank and "pod-index" in rank[0]["valueFrom"]["fieldRef"]["fieldPath"],
                  f"{name}: RANK is the pod ordinal")
            out = expand(flag_value(args, "--out"), env)
            check(any(out.startswith(m["mountPath"]) and m["name"] in claims for m in c["volumeMounts"]),
                  f"{name}: --out {out} is on the checkpoint volume claim")
    for v in volumes.values():
        check(v["name"] in mounted, f"{name}: volume {v['name']} is mounted")
    return volumes


def check_group_addr(overlay, sts, c, svc, env):
    """The ranks of a family meet at rank 0's stable DNS name under the
    StatefulSet's headless Service (names as the overlay's namePrefix makes
    them), on the container's `group` port, which the Service lists."""
    fam = os.path.basename(overlay)
    prefix = load_docs(os.path.join(overlay, "kustomization.yaml"))[0].get("namePrefix", "")
    addr = expand(flag_value(c["args"], "--group-addr") or "", env)
    port = {p["name"]: p["containerPort"] for p in c.get("ports", [])}.get("group")
    want = f"{prefix}{sts['metadata']['name']}-0.{prefix}{sts['spec']['serviceName']}:{port}"
    check(addr == want, f"overlay {fam}: --group-addr {addr} is rank 0's pod name under the Service ({want})")
    check(svc is not None and any(p.get("targetPort") == "group" for p in svc["spec"]["ports"])
          and svc["spec"].get("publishNotReadyAddresses") is True,
          f"overlay {fam}: the Service lists the group port and publishes pods before they are ready")


def check_k8s(src, distill):
    root = os.path.join(src, "deploy/k8s")
    objects, configmaps = kustomize_tree(root)
    overlays = sorted(os.listdir(os.path.join(root, "overlays")))
    check(overlays == ["vitb14", "vitl14", "vits14"], f"overlays: {', '.join(overlays)}")
    base_teacher, _ = kustomize_tree(os.path.join(root, "base/teacher"))
    services = {o["metadata"]["name"]: o for o in base_teacher if o["kind"] == "Service"}
    teacher_dep = [o for o in base_teacher if o["kind"] == "Deployment"]
    check(len(teacher_dep) == 1, "base/teacher: one Deployment")
    secrets = set()
    for o in base_teacher:
        if o["kind"] == "Deployment":
            vols = check_workload(o, [], distill, src)
            secrets |= {v["secret"]["secretName"] for v in vols.values() if "secret" in v}
    svc = services.get("distill-teacher")
    if check(svc is not None and svc["spec"].get("clusterIP") == "None", "Service distill-teacher is headless"):
        tpl_labels = teacher_dep[0]["spec"]["template"]["metadata"]["labels"]
        check(all(tpl_labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
              "Service distill-teacher selects the teacher pods")
        tport = svc["spec"]["ports"][0]
        check(tport["targetPort"] in [p["name"] for p in teacher_dep[0]["spec"]["template"]["spec"]["containers"][0]["ports"]],
              f"Service distill-teacher targets the named port {tport['targetPort']}")
    for fam in overlays:
        objs, cms = kustomize_tree(os.path.join(root, "overlays", fam))
        objs = apply_overlay(os.path.join(root, "overlays", fam), objs)
        for o in objs:
            if o["kind"] == "StatefulSet":
                c = o["spec"]["template"]["spec"]["containers"][0]
                env = env_of(c)
                check(env.get("FAMILY") == fam, f"overlay {fam}: FAMILY={env.get('FAMILY')}")
                vols = check_workload(o, cms, distill, src)
                secrets |= {v["secret"]["secretName"] for v in vols.values() if "secret" in v}
                svcs = [s for s in objs if s["kind"] == "Service" and s["metadata"]["name"] == o["spec"]["serviceName"]]
                check(len(svcs) == 1 and svcs[0]["spec"].get("clusterIP") == "None",
                      f"overlay {fam}: serviceName {o['spec']['serviceName']} is a headless Service of the base")
                check_group_addr(os.path.join(root, "overlays", fam), o, c, svcs[0] if len(svcs) == 1 else None, env)
                teachers = flag_value(c["args"], "--teachers")
                m = re.fullmatch(r"dns:([^:]+):(\d+)", teachers or "")
                check(m and svc and m.group(1) == svc["metadata"]["name"] and int(m.group(2)) == tport["port"],
                      f"overlay {fam}: --teachers {teachers} names the teachers' headless Service and port")
    docs = open(os.path.join(src, "docs/operations.md")).read()
    for s in sorted(secrets):
        check(s in docs, f"Secret {s} is described in docs/operations.md")
    for claim in ("distill-data", "distill-models"):
        check(claim in docs, f"volume claim {claim} is described in docs/operations.md")


# ---------------------------------------------------------------- Slurm, launcher

def distill_invocations(text):
    """(subcommand, tokens after it) of every `distill SUB ...` command line
    in a shell script (continuations joined; $distill, "$0" as in bash -c)."""
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = re.search(r"(?:\"\$distill\"|\"\$0\"|\bdistill)\s+(teacher|student)\b(.*)", line)
        if m:
            found.append((m.group(1), m.group(2).split()))
    return found


def check_slurm(src, distill):
    for name, sub in (("teacher.sbatch", "teacher"), ("student.sbatch", "student")):
        path = os.path.join(src, "deploy/slurm", name)
        text = open(path).read()
        check(text.startswith("#!/bin/bash"), f"{name}: a bash script")
        check(subprocess.run(["bash", "-n", path]).returncode == 0, f"{name}: bash -n parses it")
        check(re.search(r"^#SBATCH --requeue$", text, re.M) is not None, f"{name}: #SBATCH --requeue")
        check(re.search(r"^srun .*", text, re.M) is not None, f"{name}: ranks started by srun")
        inv = [i for i in distill_invocations(text) if i[0] == sub]
        if check(len(inv) == 1, f"{name}: one distill {sub} command"):
            check_flags(distill, sub, inv[0][1], name)
        if sub == "student":
            check("--resume auto" in text, f"{name}: --resume auto (a requeued job continues)")
            check(re.search(r"^#SBATCH --signal=B:USR1@\d+$", text, re.M) is not None and "scontrol requeue" in text,
                  f"{name}: USR1 before the time limit stops the ranks and requeues")
            check("--mpi=pmix" in text, f"{name}: MPI bootstrap through srun's PMIx")
    conf = os.path.join(src, "deploy/local/demo.conf")
    for line in open(conf):
        words = line.split("#")[0].split()
        if not words:
            continue
        sub, args = ("teacher", words[1:]) if words[0] == "teacher" else ("student", words[2:])
        check_flags(distill, sub, args, f"demo.conf {words[0]} {words[1] if sub == 'student' else ''}".rstrip())
        recipe = flag_value(args, "--recipe")
        check(recipe and os.path.exists(os.path.join(src, recipe)), f"demo.conf: {recipe} exists")


# ---------------------------------------------------------------- Dockerfiles

def dockerfile_instructions(path):
    text = re.sub(r"\\\n", " ", open(path).read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def deps_dev_packages(src):
    text = open(os.path.join(src, "scripts/deps.sh")).read()
    body = text[text.index("(") + 1:text.index(")")]
    # libclang-rt-dev and libomp-dev serve the clang sanitizer build only.
    return {p for p in body.split() if p.startswith("lib") and p.endswith("-dev") and p not in ("libclang-rt-dev", "libomp-dev")}


def check_docker(src, distill):
    ignore = os.path.join(src, ".dockerignore")
    if check(os.path.exists(ignore), ".dockerignore exists"):
        entries = open(ignore).read().split()
        check(all(e in entries for e in (".git", "build", "out")), ".dockerignore leaves out .git, build, out")
    dev = deps_dev_packages(src)
    for name in ("Dockerfile.gpu", "Dockerfile.cpu"):
        path = os.path.join(src, "deploy/docker", name)
        ins = dockerfile_instructions(path)
        args = {}
        stages, stage_of = [], {}
        for i, (word, rest) in enumerate(ins):
            if word == "ARG" and "=" in rest and not stages:
                k, v = rest.split("=", 1)
                args[k] = v
            if word == "FROM":
                m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
                image = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), "?"), m.group(1))
                check(":" in image and "?" not in image and not image.endswith(":latest"),
                      f"{name}: FROM {image} has a pinned tag")
                stages.append(m.group(2))
            stage_of[i] = len(stages) - 1
        check(len(stages) >= 2 and all(stages), f"{name}: multi-stage, every stage named ({', '.join(map(str, stages))})")
        final = len(stages) - 1
        for i, (word, rest) in enumerate(ins):
            m = re.search(r"--from=(\S+)", rest) if word == "COPY" else None
            if m:
                check(m.group(1) in stages[:stage_of[i]], f"{name}: COPY --from={m.group(1)} names an earlier stage")
            if word == "RUN" and "apt-get install" in rest:
                check("apt-get update" in rest and "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists/*" in rest,
                      f"{name} stage {stages[stage_of[i]]}: apt-get update, install --no-install-recommends and "
                      "the lists removed in one RUN")
                pkgs = set(re.findall(r"\b(lib[a-z0-9.+-]+-dev)\b", rest))
                if stage_of[i] == 0:
                    check(dev <= pkgs, f"{name}: the build stage installs every -dev package of scripts/deps.sh"
                          + (f" (missing {' '.join(sorted(dev - pkgs))})" if dev - pkgs else ""))
                else:
                    check(not pkgs, f"{name}: no -dev package in the runtime stage")
        last = [(w, r) for i, (w, r) in enumerate(ins) if stage_of.get(i) == final]
        entry = [r for w, r in last if w == "ENTRYPOINT"]
        check(entry == ['["distill"]'], f"{name}: ENTRYPOINT [\"distill\"] (exec form) in the final stage")
        users = [r for w, r in last if w == "USER"]
        check(users and users[-1] not in ("root", "0"), f"{name}: the final stage runs as a non-root USER ({users})")
        if name == "Dockerfile.cpu":
            check_cpu_runtime_libs(name, ins, stage_of, final, distill)


def debian_base_packages():
    """The Essential packages and what they depend on: in every Debian image, slim included."""
    rows = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Essential}\t${Pre-Depends}, ${Depends}\n"],
                          capture_output=True, text=True).stdout.splitlines()
    base = set()
    for row in rows:
        pkg, essential, deps = row.split("\t")
        if essential == "yes":
            base.add(pkg)
            base |= {re.split(r"[\s:(]", d.strip())[0] for d in re.split(r"[,|]", deps) if d.strip()}
    return base


def check_cpu_runtime_libs(name, ins, stage_of, final, distill):
    """The CPU image runs on this distribution (Debian): every library the
    binary needs directly comes from a package the runtime stage installs or
    one every Debian system has (Essential, or a dependency of one)."""
    listed = set()
    for i, (w, r) in enumerate(ins):
        if w == "RUN" and stage_of.get(i) == final and "apt-get install" in r:
            listed |= set(r.split("apt-get install", 1)[1].split("&&")[0].split())
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(["readelf", "-d", distill], capture_output=True, text=True).stdout)
    ldd = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(["ldd", distill], capture_output=True, text=True).stdout, re.M))
    base = debian_base_packages()
    # dpkg knows a file by the path its package installed (merged /usr, alternatives).
    candidates = {}
    for lib in needed:
        path = ldd.get(lib, lib)
        real = os.path.realpath(path)
        candidates[lib] = [path, real, real.replace("/usr/lib/", "/lib/", 1)]
    owners = {}
    q = subprocess.run(["dpkg", "-S"] + sorted({p for c in candidates.values() for p in c}), capture_output=True, text=True)
    for row in q.stdout.splitlines():
        pkgs, _, path = row.partition(": ")
        owners[path] = pkgs.split(",")[0].split(":")[0].strip()
    for lib in needed:
        pkg = next((owners[p] for p in candidates[lib] if p in owners), None)
        check(pkg and (pkg in listed or pkg in base), f"{name}: {lib} comes from {pkg} "
              f"({'installed by the stage' if pkg in listed else 'in every Debian system'})")


def main():
    case, src, distill = sys.argv[1], sys.argv[2], sys.argv[3]
    {"k8s": check_k8s, "slurm": check_slurm, "docker": check_docker}[case](src, distill)
    print(f"check_deploy {case}: {'all checks passed' if failures == 0 else f'{failures} failed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
