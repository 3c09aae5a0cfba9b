# Archives with owners and modes git cannot keep.
set -e
mkdir -p t/inner
printf 'one\n' > t/one
printf 'inner\n' > t/inner/two
ln -s one t/link
chmod 750 t/inner
tar --owner=1000 --group=1000 -cf tree.tar -C t .
tar --owner=42 --group=43 -czf tree.tar.gz -C t .
rm -rf t
