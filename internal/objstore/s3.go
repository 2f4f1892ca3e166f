package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"kubernaut.ai/datastorage/internal/failure"
)

// S3 multipart limits: parts of at least 5 MiB except the last, at most 10,000 parts.
const (
	minPartSize = 8 << 20
	maxParts    = 10_000
)

// defaultStallTimeout is Options.StallTimeout's default.
const defaultStallTimeout = time.Minute

// abortTimeout bounds the AbortMultipartUpload sent after a failed Put, whose own context
// may have ended.
const abortTimeout = 30 * time.Second

// s3Store is the s3:// target: the objects below a key prefix of one bucket.
type s3Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
}

// s3Location returns the bucket and key prefix ("" or ending in "/") an s3:// URL names.
func s3Location(u *url.URL) (bucket, prefix string, err error) {
	if u.Host == "" {
		return "", "", fmt.Errorf("s3 URL %q has no bucket (s3://bucket/prefix)", u.String())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("s3 URL %q: no user, query or fragment allowed; credentials and endpoint are options", u.String())
	}
	p := strings.Trim(u.Path, "/")
	if p != "" {
		if err := checkKey(p); err != nil {
			return "", "", fmt.Errorf("s3 URL %q: prefix: %w", u.String(), err)
		}
		p += "/"
	}
	return u.Host, p, nil
}

// openS3 builds a client from the standard AWS configuration (environment, shared files,
// roles) overridden by opts, then checks that the bucket answers.
func openS3(ctx context.Context, u *url.URL, opts Options) (Store, error) {
	bucket, prefix, err := s3Location(u)
	if err != nil {
		return nil, errConfig("objstore: %w", err)
	}
	var loads []func(*awsconfig.LoadOptions) error
	if opts.Region != "" {
		loads = append(loads, awsconfig.WithRegion(opts.Region))
	}
	var fileCreds *fileCredentials
	if opts.AccessKeyIDFile != "" || opts.SecretAccessKeyFile != "" {
		fileCreds = &fileCredentials{idFile: opts.AccessKeyIDFile, secretFile: opts.SecretAccessKeyFile}
		if _, err := fileCreds.Retrieve(ctx); err != nil { // a missing or empty file fails Open
			return nil, err
		}
		// Keeps LoadDefaultConfig from looking for credentials elsewhere; replaced below by
		// the uncached provider.
		loads = append(loads, awsconfig.WithCredentialsProvider(fileCreds))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, errConfig("objstore: loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		// S3-compatible servers ignore the region but the signer needs one; AWS answers
		// a wrong one with a redirect naming the right one.
		cfg.Region = "us-east-1"
	}
	stall := opts.StallTimeout
	if stall <= 0 {
		stall = defaultStallTimeout
	}
	cfg.HTTPClient = awshttp.NewBuildableClient().WithReadTimeout(stall).WithTransportOptions(func(tr *http.Transport) {
		tr.ResponseHeaderTimeout = stall
	})
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		if fileCreds != nil {
			// Not behind LoadDefaultConfig's cache, which would keep credentials that
			// never expire for ever: the files are checked at every request.
			o.Credentials = fileCreds
		}
		// A ranged GET has no whole-object checksum to validate; without this the SDK logs
		// that it skipped the validation on every read.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &s3Store{client: client, bucket: bucket, prefix: prefix}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		op := fmt.Sprintf("objstore: bucket %q", bucket)
		if status(err) == 404 {
			return nil, errConfig("%s does not exist: %w", op, err)
		}
		return nil, s3Err(op, err)
	}
	return s, nil
}

// fileCredentials is the access key pair stored in two files (a mounted Secret). It reads
// them again whenever either file changes (size or modification time: a Kubernetes Secret
// update swaps in new files), so a new key pair is used without a restart; otherwise it costs
// two stats per request. The SDK's signer keeps its derived signing key per access key id
// and day: a secret changed under the same key id takes effect the next day.
type fileCredentials struct {
	idFile, secretFile string

	mu     sync.Mutex
	stamps [2]fileStamp
	creds  aws.Credentials
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}

// Retrieve implements aws.CredentialsProvider.
func (f *fileCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	stamps := [2]fileStamp{stampOf(f.idFile), stampOf(f.secretFile)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.creds.HasKeys() && stamps == f.stamps {
		return f.creds, nil
	}
	id, err := readCredentialFile("access key id", f.idFile)
	if err != nil {
		return aws.Credentials{}, err
	}
	secret, err := readCredentialFile("secret access key", f.secretFile)
	if err != nil {
		return aws.Credentials{}, err
	}
	f.creds = aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, Source: "objstore credential files"}
	f.stamps = stamps
	return f.creds, nil
}

// readCredentialFile returns the trimmed content of a credential file, so that a trailing
// line break written by echo or an editor is not part of the key.
func readCredentialFile(what, path string) (string, error) {
	if path == "" {
		return "", errConfig("objstore: the %s file is not set; give both credential files or neither", what)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", errConfig("objstore: %s file: %w", what, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errConfig("objstore: %s file %s is empty", what, path)
	}
	return v, nil
}

func (s *s3Store) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	op := fmt.Sprintf("objstore: put %q", key)
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if size < 0 {
		return failure.Mark(fmt.Errorf("%s: negative size %d", op, size), failure.Data)
	}
	cr := &countingReader{ctx: ctx, r: io.LimitReader(body, size+1)}
	partSize := max(minPartSize, (size+maxParts-1)/maxParts)
	if size <= partSize {
		buf := make([]byte, size)
		if err := readPart(op, key, cr, buf, size); err != nil {
			return err
		}
		if err := checkBodyEnd(key, cr, size); err != nil {
			return err
		}
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(s.bucket),
			Key:           aws.String(s.prefix + key),
			Body:          bytes.NewReader(buf),
			ContentLength: aws.Int64(size),
		})
		if err != nil {
			return s3Err(op, err)
		}
		return nil
	}
	return s.putMultipart(ctx, op, key, cr, size, partSize)
}

// putMultipart uploads in parts of partSize read one at a time into one buffer: memory stays
// at one part whatever the object's size, and each part is a seekable body the SDK can sign
// and retry. S3 shows the object only at CompleteMultipartUpload; a failure aborts the
// upload. An upload orphaned by a crash stays invisible and is reclaimed by the bucket's
// AbortIncompleteMultipartUpload lifecycle rule (docs/operations.md).
func (s *s3Store) putMultipart(ctx context.Context, op, key string, cr *countingReader, size, partSize int64) (err error) {
	fullKey := s.prefix + key
	// The part checksums are declared at creation and repeated at completion, as S3
	// requires when parts carry one (the SDK adds a CRC32 to each part by default).
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(fullKey),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return s3Err(op, err)
	}
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: aws.String(fullKey), UploadId: up.UploadId,
		})
	}()
	buf := make([]byte, partSize)
	var parts []types.CompletedPart
	for n, part := int64(0), int32(1); n < size; part++ {
		chunk := buf[:min(partSize, size-n)]
		if err := readPart(op, key, cr, chunk, size); err != nil {
			return err
		}
		if n+int64(len(chunk)) == size {
			if err := checkBodyEnd(key, cr, size); err != nil {
				return err
			}
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:            aws.String(s.bucket),
			Key:               aws.String(fullKey),
			UploadId:          up.UploadId,
			PartNumber:        aws.Int32(part),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			Body:              bytes.NewReader(chunk),
			ContentLength:     aws.Int64(int64(len(chunk))),
		})
		if err != nil {
			return s3Err(op, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(part), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
		n += int64(len(chunk))
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(fullKey),
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return s3Err(op, err)
	}
	return nil
}

// readPart fills buf from the body; a body that ends early is a size error, one that fails is
// the body's error.
func readPart(op, key string, cr *countingReader, buf []byte, size int64) error {
	_, err := io.ReadFull(cr, buf)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errSize(key, size, cr.n, false)
	default:
		return fmt.Errorf("%s: reading the body: %w", op, err)
	}
}

// checkBodyEnd fails if the body has more than size bytes.
func checkBodyEnd(key string, cr *countingReader, size int64) error {
	var one [1]byte
	if n, _ := io.ReadFull(cr, one[:]); n > 0 {
		return errSize(key, size, cr.n, true)
	}
	return nil
}

// Open heads the object for its size and ETag; every ReadAt is a ranged GET conditional on
// that ETag, so a reader never mixes bytes of two versions of a key.
func (s *s3Store) Open(ctx context.Context, key string) (Object, error) {
	op := fmt.Sprintf("objstore: open %q", key)
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		if status(err) == 404 {
			return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
		}
		return nil, s3Err(op, err)
	}
	return &s3Object{ctx: ctx, s: s, key: key, size: aws.ToInt64(out.ContentLength), etag: out.ETag}, nil
}

// s3Object reads an object by ranged GETs. io.ReaderAt has no context parameter, so reads use
// the context given to Open: cancelling it stops them.
type s3Object struct {
	ctx  context.Context //nolint:containedctx // io.ReaderAt takes none; see the type's comment
	s    *s3Store
	key  string
	size int64
	etag *string
}

func (o *s3Object) Size() int64  { return o.size }
func (o *s3Object) Close() error { return nil }

func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("objstore: read %q: negative offset %d", o.key, off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), o.size)
	op := fmt.Sprintf("objstore: read %q bytes %d-%d", o.key, off, end-1)
	out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{
		Bucket:  aws.String(o.s.bucket),
		Key:     aws.String(o.s.prefix + o.key),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, end-1)),
		IfMatch: o.etag,
	})
	if err != nil {
		return 0, s3Err(op, err)
	}
	defer out.Body.Close()
	n, err := io.ReadFull(out.Body, p[:end-off])
	if err != nil {
		return n, s3Err(op, err)
	}
	if end-off < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (s *s3Store) List(ctx context.Context, prefix string) ([]Info, error) {
	op := fmt.Sprintf("objstore: list %q", prefix)
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var out []Info
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s3Err(op, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if checkKey(key) != nil {
				continue // a "folder" marker of a console, or a name no Put of ours writes
			}
			out = append(out, Info{Key: key, Size: aws.ToInt64(o.Size)})
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	op := fmt.Sprintf("objstore: delete %q", key)
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil && status(err) != 404 {
		return s3Err(op, err)
	}
	return nil
}

// status returns the HTTP status of the answer err carries, 0 if there was none.
func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.HTTPStatusCode()
	}
	return 0
}

// transientCodes are S3 error codes that say "later", some of them sent with a 4xx status.
var transientCodes = map[string]bool{
	"RequestTimeout": true, "SlowDown": true, "ServiceUnavailable": true, "InternalError": true,
	"RequestTimeTooSkewed": false, // a clock to fix: an operator's job
}

// s3Err wraps err with op and its class: no answer (connection refused or reset, timeout,
// ended context) or a 5xx/429/throttling answer is Unavailable; any other answer (403, a
// missing bucket, a wrong region, a bad request) is Internal: it needs an operator.
func s3Err(op string, err error) error {
	class := failure.Internal
	var apiErr smithy.APIError
	switch code := status(err); {
	case code >= 500 || code == 429:
		class = failure.Unavailable
	case errors.As(err, &apiErr) && transientCodes[apiErr.ErrorCode()]:
		class = failure.Unavailable
	case code != 0:
		class = failure.Internal
	case unreachable(err):
		class = failure.Unavailable
	}
	return failure.Mark(fmt.Errorf("%s: %w", op, err), class)
}

// unreachable reports whether err says the server gave no answer.
func unreachable(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
