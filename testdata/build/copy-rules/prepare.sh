# Modes, links and hard links git cannot keep.
set -e
chmod 600 ctx/dir/top
chmod 750 ctx/dir/sub
chmod 755 ctx/b.txt
mkdir -p ctx/links ctx/hard ctx/empty
ln -sf file.txt ctx/link-to-file
ln -sf ../file.txt ctx/links/up
ln -sf /etc/passwd ctx/links/absolute
ln -sf dangling ctx/links/dangling
printf 'hard\n' > ctx/hard/one
ln -f ctx/hard/one ctx/hard/two
