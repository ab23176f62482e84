# vecphi: checks shared by the TAP tests in test/t/0[1-9]*.pl, beside
# VecphiTest.pm (nodes, tokens, relation files).
#
#   use VecphiCheck;
#   is(VecphiCheck::error_of($node, 'postgres', $sql), 'no error');
#   like(VecphiCheck::error_of($node, 'postgres', $sql), qr/^58P01: /);
#   my @segments = VecphiCheck::wal_segments($node, $first, $last);
#   my $mode = VecphiCheck::file_mode($path);     # e.g. 0600

package VecphiCheck;

use strict;
use warnings;

use Digest::MD5;
use File::Basename qw(basename);

use VecphiTest;

# A statement that sets verified claims for the rest of the transaction
# and prints nothing (VecphiTest::claims_sql's SELECT prints an empty row).
# %claims as for VecphiTest::token.
sub claims_do
{
	my (%claims) = @_;
	my $token = VecphiTest::token(%claims);
	$token =~ s/'/''/g;
	return "DO \$\$BEGIN PERFORM vecphi.set_claims('$token'); END\$\$;";
}

# Run $sql (one psql script, stopping at the first error) and return
# "SQLSTATE: message" of the error it raised, or 'no error'.
sub error_of
{
	my ($node, $dbname, $sql) = @_;
	my ($stdout, $stderr) = ('', '');

	my $ret = $node->psql(
		$dbname, "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout,
		stderr => \$stderr,
		on_error_stop => 1);
	return 'no error' if $ret == 0;
	return "$1: $2" if $stderr =~ /(?:ERROR|FATAL):\s+([0-9A-Z]{5}):\s+([^\n]*)/;
	return "psql exit $ret: $stderr";
}

# The WAL segment files of $node from $first to $last (file names as
# pg_walfile_name() gives them), inclusive, that exist in pg_wal.
sub wal_segments
{
	my ($node, $first, $last) = @_;
	my $dir = $node->data_dir . '/pg_wal';

	opendir my $dh, $dir or die "could not open \"$dir\": $!";
	my @names = sort grep { /^[0-9A-F]{24}$/ && $_ ge $first && $_ le $last }
	  readdir $dh;
	closedir $dh;
	return map { "$dir/$_" } @names;
}

# The current WAL file name of $node (the segment the insert position is in).
sub current_walfile
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname,
		'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');
}

# MD5 of each file's content, as a hash path => hex digest.
sub file_digests
{
	my (@files) = @_;
	my %digest;
	for my $file (@files)
	{
		open my $fh, '<:raw', $file or die "could not open \"$file\": $!";
		$digest{$file} = Digest::MD5->new->addfile($fh)->hexdigest;
		close $fh;
	}
	return \%digest;
}

# Permission bits of a file (mode & 07777), or undef if it does not exist.
sub file_mode
{
	my ($path) = @_;
	my @st = stat $path;
	return undef unless @st;
	return $st[2] & 07777;
}

# Names of the files in a directory, sorted.
sub dir_files
{
	my ($dir) = @_;
	opendir my $dh, $dir or die "could not open \"$dir\": $!";
	my @names = sort grep { !/^\.\.?$/ } readdir $dh;
	closedir $dh;
	return @names;
}

# Write $content to $path with mode $mode (default 0600).
sub write_file
{
	my ($path, $content, $mode) = @_;
	my $old_umask = umask 077;
	open my $fh, '>', $path or die "could not write \"$path\": $!";
	print $fh $content;
	close $fh or die "could not write \"$path\": $!";
	umask $old_umask;
	chmod(($mode // 0600), $path) or die "could not chmod \"$path\": $!";
	return;
}

# Comma-separated ids of an ehnsw index search of table docs: the $limit
# rows nearest to the SQL expression $query (an evector), under the claims
# that $claims_sql sets (see claims_do), with sequential scans off.
sub index_search_ids
{
	my ($node, $claims_sql, $query, $limit) = @_;
	return $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims_sql
		SET LOCAL enable_seqscan = off;
		SELECT string_agg(id::text, ',') FROM
			(SELECT id FROM docs ORDER BY emb <-> ($query) LIMIT $limit) s;
		COMMIT;
	});
}

# The audit records of a node, one line each: "action outcome rows N detail"
# (rows -1 when the record has none), after waiting for queued records.
sub audit_lines
{
	my ($node, $dbname) = @_;
	$dbname //= 'postgres';
	return split /\n/, $node->safe_psql($dbname, q{
		SELECT vecphi.audit_flush();
		SELECT action || ' ' || outcome || ' rows ' || coalesce(rows_returned, -1)
			|| ' ' || coalesce(detail, '')
		FROM vecphi.audit_log ORDER BY seq});
}

1;
