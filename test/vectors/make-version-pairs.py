#!/usr/bin/env python3
"""Generate version pairs and record what the real tools say about them.

  dpkg-pairs.tsv  a <TAB> b <TAB> -1|0|1   from `dpkg --compare-versions` (Debian's dpkg)
  rpm-pairs.tsv   a <TAB> b <TAB> -1|0|1   from rpm.vercmp in `rpm --eval` (rpm 4.18)

The pairs are random but seeded, built from the pieces that make version orders hard: epochs,
`~` and `+`, letters against digits, leading zeros, long numbers, revisions. Airlock's own
comparisons must agree with every line (test/unit/versions.test.ts).
Run: python3 test/vectors/make-version-pairs.py   (needs dpkg and rpm on PATH)
"""
import random, subprocess, os, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261129)

def piece():
    r = rng.random()
    if r < 0.45: return str(rng.choice([0, 1, 2, 9, 10, 11, 99, 100, 2023, 20191002222144]))
    if r < 0.55: return '0' + str(rng.randint(0, 9))
    if r < 0.75: return rng.choice(['a', 'b', 'rc', 'alpha', 'beta', 'p', 'git', 'dfsg', 'ubuntu', 'deb', 'Z', 'z'])
    return rng.choice(['.', '+', '~', '~~', '.', '-', '_'])

def upstream():
    s = str(rng.randint(0, 12))
    for _ in range(rng.randint(0, 5)): s += piece()
    return s

def deb_version():
    v = upstream().replace(':', '')
    if rng.random() < 0.2: v = f'{rng.choice([0, 1, 2, 10])}:{v}'
    if rng.random() < 0.6 or '-' in v: v += '-' + rng.choice(['1', '2', '0ubuntu1', '1+deb12u1', '1~bpo11+1', '3.1', '1build2', '10', 'r1'])
    return v

def similar(v):
    """A neighbour of v, so that many pairs are close (equal prefixes) and exercise the details."""
    ops = [lambda s: s + rng.choice(['~', '~rc1', '+1', '.0', 'a', '1', '-1']),
           lambda s: s.replace('.', rng.choice(['.0', '~', '+', '.']), 1),
           lambda s: s[:-1] if len(s) > 1 else s,
           lambda s: s]
    return rng.choice(ops)(v)

def valid_deb(v):
    ok = subprocess.run(['dpkg', '--validate-version', v], capture_output=True).returncode == 0
    return ok

def dpkg_cmp(a, b):
    if subprocess.run(['dpkg', '--compare-versions', a, 'lt', b]).returncode == 0: return -1
    if subprocess.run(['dpkg', '--compare-versions', a, 'eq', b]).returncode == 0: return 0
    return 1

def main():
    pairs = []
    while len(pairs) < 3000:
        a = deb_version()
        b = similar(a) if rng.random() < 0.6 else deb_version()
        if valid_deb(a) and valid_deb(b): pairs.append((a, b))
    with open(os.path.join(HERE, 'dpkg-pairs.tsv'), 'w') as f:
        for a, b in pairs: f.write(f'{a}\t{b}\t{dpkg_cmp(a, b)}\n')

    rpairs = []
    while len(rpairs) < 3000:
        a = upstream().replace('-', '.')
        b = similar(a).replace('-', '.') if rng.random() < 0.6 else upstream().replace('-', '.')
        if '"' in a + b or '\\' in a + b: continue
        rpairs.append((a, b))
    lua = ''.join(f'print(rpm.vercmp("{a}", "{b}") .. "\\n")\n' for a, b in rpairs)
    with tempfile.NamedTemporaryFile('w', suffix='.lua', delete=False) as t:
        t.write(lua)
    out = subprocess.run(['rpm', '--eval', '%{lua: dofile("' + t.name + '")}'], capture_output=True, text=True, check=True).stdout.split()
    os.unlink(t.name)
    assert len(out) == len(rpairs), (len(out), len(rpairs))
    with open(os.path.join(HERE, 'rpm-pairs.tsv'), 'w') as f:
        for (a, b), r in zip(rpairs, out): f.write(f'{a}\t{b}\t{r}\n')

main()
