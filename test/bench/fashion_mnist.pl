#!/usr/bin/perl
# Write Fashion-MNIST (Debian's dataset-fashion-mnist) as COPY text:
#   fashion_mnist.pl BASE_COUNT QUERY_COUNT OUTDIR
# produces OUTDIR/base.tsv ("id<TAB>[v1,...,v784]", the training images:
# ann-benchmarks' base set) and OUTDIR/queries.tsv (the test images).
use strict;
use warnings;
use IO::Uncompress::Gunzip qw($GunzipError);

my ($base_count, $query_count, $outdir) = @ARGV;
die "usage: $0 BASE_COUNT QUERY_COUNT OUTDIR\n" unless defined $outdir;
my $dir = '/usr/share/datasets/fashion-mnist';

# Read up to $count images of an IDX3 file and write them as COPY text.
sub convert
{
	my ($file, $count, $out) = @_;
	my $z = IO::Uncompress::Gunzip->new("$dir/$file")
	  or die "cannot read $dir/$file: $GunzipError\n";
	my $header;
	$z->read($header, 16) == 16 or die "$file: short header\n";
	my ($magic, $n, $rows, $cols) = unpack('N4', $header);
	die "$file: not an IDX3 image file\n" unless $magic == 2051;
	my $dims = $rows * $cols;
	$count = $n if $count > $n;
	open my $fh, '>', $out or die "cannot write $out: $!\n";
	for my $i (0 .. $count - 1)
	{
		my $buf = '';
		while (length($buf) < $dims)
		{
			my $chunk;
			my $got = $z->read($chunk, $dims - length($buf));
			die "$file: truncated\n" unless $got;
			$buf .= $chunk;
		}
		print $fh $i, "\t[", join(',', unpack("C$dims", $buf)), "]\n";
	}
	close $fh or die "cannot write $out: $!\n";
	return $count;
}

my $nb = convert('train-images-idx3-ubyte.gz', $base_count, "$outdir/base.tsv");
my $nq = convert('t10k-images-idx3-ubyte.gz', $query_count, "$outdir/queries.tsv");
print "$nb base vectors, $nq queries\n";
