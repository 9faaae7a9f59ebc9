#!/usr/bin/env python3
"""check_docs.py - keeps the reference documentation true to the code.

    python3 tests/docs/check_docs.py            # check the repository
    python3 tests/docs/check_docs.py --self-test

Fails (exit 1), naming each one, when
  - an `ebpf_capture.*` setting defined by a DefineCustom*Variable call in
    extension/ is not in docs/configuration.md, or docs/configuration.md
    names one the code does not define (renamed or removed);
  - a function, table, view or type created by the extension's SQL scripts
    (sql/ebpf_capture--*.sql, run in order: what a later script drops is
    gone; `_`-prefixed internals included) is not in docs/sql.md;
  - a relative link in README.md, docs/*.md, deploy/README.md or
    tests/README.md points to a file that does not exist, or to a heading
    that the linked Markdown file does not have.

An object counts as documented when its name appears in backquotes:
`ebpf_capture.batch_size`, `capture_start`, `capture_start(interface)`.

--self-test copies the repository's docs and sources into a temporary
directory, removes documented settings and functions, breaks links, adds an
undocumented setting and function, and checks that each is reported; and
that a function a later script drops is no longer required.
Python 3 standard library only; needs no server and no root.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

GUC_RE = re.compile(
    r'DefineCustom(?:Bool|Int|Real|String|Enum)Variable\s*\(\s*"(ebpf_capture\.[A-Za-z0-9_]+)"')
SQL_OBJECT_RE = re.compile(
    r'^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNLOGGED\s+)?(FUNCTION|TABLE|VIEW|TYPE)\s+'
    r'@extschema@\.("?[A-Za-z0-9_]+"?)',
    re.IGNORECASE | re.MULTILINE)
SQL_DROP_RE = re.compile(
    r'^\s*DROP\s+(FUNCTION|TABLE|VIEW|TYPE)\s+(?:IF\s+EXISTS\s+)?@extschema@\.("?[A-Za-z0-9_]+"?)',
    re.IGNORECASE | re.MULTILINE)
LINK_RE = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)|!\[[^\]]*\]\(([^)\s]+)\)')
HEADING_RE = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
FENCE_RE = re.compile(r'^\s*(```|~~~)')

LINKED_DOCS = ['README.md', 'deploy/README.md', 'tests/README.md']


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def strip_sql_comments(text):
    return '\n'.join(line.split('--', 1)[0] if '--' in line and "'" not in line.split('--', 1)[0]
                     else line for line in text.splitlines())


def settings(repo):
    """{name: file} for every DefineCustom*Variable under extension/."""
    found = {}
    for root, _dirs, files in os.walk(os.path.join(repo, 'extension')):
        for name in sorted(files):
            if not name.endswith(('.cpp', '.cc', '.c', '.h')):
                continue
            path = os.path.join(root, name)
            for m in GUC_RE.finditer(read(path)):
                found.setdefault(m.group(1), os.path.relpath(path, repo))
    return found


def script_order(name):
    """Install script first (ebpf_capture--0.1.sql), then the upgrade scripts
    by the version they start from."""
    versions = name[len('ebpf_capture--'):-len('.sql')].split('--')
    key = [tuple(int(x) if x.isdigit() else x for x in re.split(r'[.]', v)) for v in versions]
    return (len(versions), key)


def sql_objects(repo):
    """{name: (kind, file)} for every object the extension has once its
    scripts have run in order: created by CREATE, not dropped by a later DROP."""
    found = {}
    sql_dir = os.path.join(repo, 'sql')
    scripts = [n for n in os.listdir(sql_dir)
               if n.startswith('ebpf_capture--') and n.endswith('.sql')]
    for name in sorted(scripts, key=script_order):
        path = os.path.join(sql_dir, name)
        text = strip_sql_comments(read(path))
        events = [(m.start(), 'create', m.group(1).lower(), m.group(2).strip('"'))
                  for m in SQL_OBJECT_RE.finditer(text)]
        events += [(m.start(), 'drop', m.group(1).lower(), m.group(2).strip('"'))
                   for m in SQL_DROP_RE.finditer(text)]
        for _pos, what, kind, obj in sorted(events):
            if what == 'create':
                found[obj] = (kind, os.path.relpath(path, repo))
            else:
                found.pop(obj, None)
    return found


def documented(text, name):
    """Whether `name` appears in backquotes (alone, with arguments, or
    schema-qualified)."""
    return re.search(r'`(?:[A-Za-z0-9_]+\.)?' + re.escape(name) + r'(?:`|\()', text) is not None


def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r'`', '', s)
    s = re.sub(r'[^\w\- ]', '', s)
    return s.replace(' ', '-')


def anchors(path):
    out = set()
    counts = {}
    in_fence = False
    for line in read(path).splitlines():
        if FENCE_RE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = HEADING_RE.match(line)
        if m:
            base = slug(m.group(2))
            n = counts.get(base, 0)
            counts[base] = n + 1
            out.add(base if n == 0 else '%s-%d' % (base, n))
    return out


def markdown_files(repo):
    files = [os.path.join(repo, f) for f in LINKED_DOCS if os.path.exists(os.path.join(repo, f))]
    docs = os.path.join(repo, 'docs')
    if os.path.isdir(docs):
        files += [os.path.join(docs, f) for f in sorted(os.listdir(docs)) if f.endswith('.md')]
    return files


def broken_links(repo):
    problems = []
    for path in markdown_files(repo):
        in_fence = False
        for lineno, line in enumerate(read(path).splitlines(), 1):
            if FENCE_RE.match(line):
                in_fence = not in_fence
                continue
            if in_fence:
                continue
            for m in LINK_RE.finditer(line):
                target = m.group(1) or m.group(2)
                if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.IGNORECASE):
                    continue  # http:, https:, mailto:
                where = '%s:%d' % (os.path.relpath(path, repo), lineno)
                file_part, _, fragment = target.partition('#')
                dest = path if file_part == '' else os.path.normpath(
                    os.path.join(os.path.dirname(path), file_part))
                if not os.path.exists(dest):
                    problems.append('%s: link to %s: no such file' % (where, target))
                    continue
                if fragment and dest.endswith('.md') and fragment not in anchors(dest):
                    problems.append('%s: link to %s: no heading "#%s" in %s' %
                                    (where, target, fragment, os.path.relpath(dest, repo)))
    return problems


def check(repo):
    problems = []
    conf_path = os.path.join(repo, 'docs', 'configuration.md')
    sql_path = os.path.join(repo, 'docs', 'sql.md')
    conf = read(conf_path) if os.path.exists(conf_path) else ''
    sql = read(sql_path) if os.path.exists(sql_path) else ''
    gucs = settings(repo)
    objects = sql_objects(repo)
    if not gucs:
        problems.append('no DefineCustom*Variable call found under extension/: the check is broken')
    if not objects:
        problems.append('no CREATE ... @extschema@. found in sql/: the check is broken')
    for name, where in sorted(gucs.items()):
        if not documented(conf, name):
            problems.append('setting %s (%s) is not in docs/configuration.md' % (name, where))
    if gucs:
        for lineno, line in enumerate(conf.splitlines(), 1):
            for name in sorted(set(re.findall(r'`(ebpf_capture\.[A-Za-z0-9_]+)`', line))):
                if name not in gucs:
                    problems.append('docs/configuration.md:%d: %s is no setting of the code '
                                    '(renamed or removed?)' % (lineno, name))
    for name, (kind, where) in sorted(objects.items()):
        if not documented(sql, name):
            problems.append('%s %s (%s) is not in docs/sql.md' % (kind, name, where))
    problems += broken_links(repo)
    return problems, len(gucs), len(objects)


def self_test(repo):
    """Mutations the check must catch, each on a fresh copy."""
    failures = []

    def copy():
        tmp = tempfile.mkdtemp(prefix='ebpfc-docs-check.')
        for d in ('extension', 'sql', 'docs', 'deploy', 'tests'):
            src = os.path.join(repo, d)
            if d == 'tests':
                os.makedirs(os.path.join(tmp, d))
                if os.path.exists(os.path.join(src, 'README.md')):
                    shutil.copy(os.path.join(src, 'README.md'), os.path.join(tmp, d))
                continue
            if d == 'deploy':
                os.makedirs(os.path.join(tmp, d))
                shutil.copy(os.path.join(src, 'README.md'), os.path.join(tmp, d))
                continue
            shutil.copytree(src, os.path.join(tmp, d))
        shutil.copy(os.path.join(repo, 'README.md'), tmp)
        # the files README.md and docs link to, so that links resolve as in the repository
        for path in markdown_files(repo):
            for line in read(path).splitlines():
                for m in LINK_RE.finditer(line):
                    target = (m.group(1) or m.group(2)).partition('#')[0]
                    if not target or ':' in target:
                        continue
                    src = os.path.normpath(os.path.join(os.path.dirname(path), target))
                    rel = os.path.relpath(src, repo)
                    dst = os.path.join(tmp, rel)
                    if rel.startswith('..') or os.path.exists(dst) or not os.path.exists(src):
                        continue
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    if os.path.isdir(src):
                        shutil.copytree(src, dst)
                    else:
                        shutil.copy(src, dst)
        return tmp

    def mutate(path, old, new):
        text = read(path)
        if old not in text:
            return False
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text.replace(old, new))
        return True

    tmp = copy()
    try:
        problems, _, _ = check(tmp)
        if problems:
            failures.append('the unmutated copy fails: %s' % problems[0])
    finally:
        shutil.rmtree(tmp)

    cases = [
        ('docs/configuration.md', '`ebpf_capture.batch_size`', '`batch size`',
         'setting ebpf_capture.batch_size'),
        ('docs/sql.md', '`capture_stop', '`stop_capture', 'function capture_stop'),
        ('docs/sql.md', '`_rollup_add`', '`rollup add`', 'function _rollup_add'),
        ('docs/architecture.md', '(storage.md)', '(storage-gone.md)', 'storage-gone.md'),
        ('docs/architecture.md', '(#the-process-model)', '(#no-such-heading)',
         '#no-such-heading'),
    ]
    for rel, old, new, expect in cases:
        tmp = copy()
        try:
            if not mutate(os.path.join(tmp, rel), old, new):
                failures.append('cannot mutate %s: %r is not in it' % (rel, old))
                continue
            problems, _, _ = check(tmp)
            if not any(expect in p for p in problems):
                failures.append('%s with %r removed: not reported (got %s)' % (rel, old, problems))
        finally:
            shutil.rmtree(tmp)
    # a new setting in the code, undocumented
    tmp = copy()
    try:
        with open(os.path.join(tmp, 'extension', 'pg', 'zz_new.cpp'), 'w') as f:
            f.write('DefineCustomBoolVariable(\n    "ebpf_capture.brand_new", "x", nullptr,\n'
                    '    &x, false, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);\n')
        with open(os.path.join(tmp, 'sql', 'ebpf_capture--0.2--0.3.sql'), 'w') as f:
            f.write('CREATE FUNCTION @extschema@.brand_new_fn() RETURNS int\n'
                    'LANGUAGE sql RETURN 1;\n')
        problems, _, _ = check(tmp)
        for expect in ('ebpf_capture.brand_new', 'brand_new_fn'):
            if not any(expect in p for p in problems):
                failures.append('a new undocumented %s is not reported' % expect)
    finally:
        shutil.rmtree(tmp)
    # a setting the code no longer has, still documented
    tmp = copy()
    try:
        mutate(os.path.join(tmp, 'docs', 'configuration.md'), '`ebpf_capture.batch_size`',
               '`ebpf_capture.batch_size`, `ebpf_capture.batch_rows`')
        problems, _, _ = check(tmp)
        if not any('ebpf_capture.batch_rows is no setting' in p for p in problems):
            failures.append('a documented setting the code lacks is not reported')
    finally:
        shutil.rmtree(tmp)
    # a function a later script drops need not be documented
    tmp = copy()
    try:
        with open(os.path.join(tmp, 'sql', 'ebpf_capture--0.2--0.3.sql'), 'w') as f:
            f.write('DROP FUNCTION @extschema@.otlp_status();\n')
        mutate(os.path.join(tmp, 'docs', 'sql.md'), '`otlp_status', '`gone_status')
        problems, _, _ = check(tmp)
        if any('otlp_status' in p for p in problems):
            failures.append('a dropped function is still required: %s' % problems)
    finally:
        shutil.rmtree(tmp)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repo', default=os.path.normpath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')))
    ap.add_argument('--self-test', action='store_true',
                    help='check that the check catches removed entries and broken links')
    args = ap.parse_args()
    if args.self_test:
        failures = self_test(args.repo)
        for f in failures:
            print('self-test: ' + f)
        print('self-test: %s' % ('FAILED' if failures else 'every mutation was caught'))
        return 1 if failures else 0
    problems, ngucs, nobjects = check(args.repo)
    for p in problems:
        print(p)
    if problems:
        print('%d problem(s) in the documentation' % len(problems))
        return 1
    print('docs: %d settings, %d SQL objects documented; every relative link resolves'
          % (ngucs, nobjects))
    return 0


if __name__ == '__main__':
    sys.exit(main())
