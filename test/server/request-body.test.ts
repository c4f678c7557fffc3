// Request bodies that JSON.parse accepts but that could be read two ways (duplicate keys), that
// name prototype keys, or that arrive compressed or in another charset.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { parseJsonBody } from '../../src/server/request-body.ts';
import { AppError } from '../../src/services/errors.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

/** JSON values without the prototype keys, which parseJsonBody rejects on purpose. */
const plainJsonValue = fc
  .jsonValue()
  .filter((value) => !/"(?:__proto__|constructor)":/.test(JSON.stringify(value)));

/** Returns the AppError that parseJsonBody throws for `text`. */
function rejectionOf(text: string): AppError {
  try {
    parseJsonBody(text);
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    return error;
  }
  assert.fail(`parseJsonBody accepted ${text.slice(0, 80)}`);
}

describe('parseJsonBody', () => {
  for (const [name, text, field] of [
    ['top-level key', '{"a":1,"b":2,"a":3}', 'a'],
    ['key spelled with an escape', '{"note_text":"x","note\\u005ftext":"y"}', 'note_text'],
    ['key in a nested object', '{"a":{"b":1,"c":{"d":1,"d":2}}}', 'a.c.d'],
    ['key in an array item', '{"a":[{"x":1},{"x":2,"y":[],"x":3}]}', 'a.1.x'],
    ['key after strings with quotes', '{"s":"\\":\\\\","t":"{[,","s":1}', 's'],
    ['key with whitespace before the colon', '{ "a" :1,\n\t"a"\r\n: 2 }', 'a'],
    ['key in a top-level array', '[1,{"k":1},{"k":1,"k":1}]', '2.k'],
    ['empty key', '{"note_text":"x","":1,"":2}', ''],
    ['key with a line break', '{"a\\nb":1,"a\\nb":2}', 'a\nb'],
  ] as const) {
    test(`duplicate ${name} is rejected`, () => {
      const error = rejectionOf(text);
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.equal(
        error.message,
        `body field ${JSON.stringify(field)} appears more than once in its object; send each key once`,
      );
      assert.deepEqual(error.details, [
        {
          field,
          rule: 'unique',
          message: 'appears more than once in its object; send each key once',
        },
      ]);
    });
  }

  test('same key in sibling objects is accepted', () => {
    for (const text of [
      '{"x":1,"y":{"x":2},"z":[{"x":3},{"x":4}]}',
      '{"a\\"":1,"a":2,"a\\\\":3}',
      '{"a":"b\\":\\"c","b":"a"}',
      '[]',
      '{}',
      '"text"',
      '12',
      'null',
    ]) {
      assert.deepEqual(parseJsonBody(text), JSON.parse(text), text);
    }
    assert.equal(rejectionOf('{"x":{},"x":{}}').details![0]!.field, 'x');
  });

  test('deep nesting is parsed without stack overflow', () => {
    const depth = 200_000;
    const valid = '['.repeat(depth) + '{"a":1}' + ']'.repeat(depth);
    assert.ok(Array.isArray(parseJsonBody(valid)));
    const text = '['.repeat(depth) + '{"a":1,"a":2}' + ']'.repeat(depth);
    const error = rejectionOf(text);
    const field = error.details![0]!.field;
    assert.ok(field.length <= 200, `${field.length} characters`);
    assert.ok(field.endsWith('.0.0.a'), field);
  });

  for (const [text, field] of [
    ['{"__proto__":{"x":1}}', '__proto__'],
    ['{"a":[{"\\u005f_proto__":1}]}', 'a.0.__proto__'],
    ['{"constructor":{"prototype":{"x":1}}}', 'constructor'],
    ['{"b":{"constructor":1}}', 'b.constructor'],
  ] as const) {
    test(`prototype key is rejected: ${text}`, () => {
      const error = rejectionOf(text);
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.equal(
        error.message,
        `body field ${JSON.stringify(field)} is not allowed, because it could change object prototypes`,
      );
      assert.equal(error.details![0]!.field, field);
    });
  }

  test('a repeated member is always found', () => {
    const key = fc.string().filter((name) => name !== '__proto__' && name !== 'constructor');
    const members = fc.uniqueArray(fc.tuple(key, plainJsonValue), {
      minLength: 1,
      selector: ([name]) => name,
    });
    fc.assert(
      fc.property(members, fc.nat(), plainJsonValue, (entries, pick, repeated) => {
        const [name] = entries[pick % entries.length]!;
        const written = entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
        const unique = `{"outer":[{${written.join(',')}}]}`;
        assert.deepEqual(parseJsonBody(unique), JSON.parse(unique));
        written.push(`${JSON.stringify(name)}:${JSON.stringify(repeated)}`);
        const text = `{"outer":[{${written.join(',')}}]}`;
        const error = rejectionOf(text);
        assert.equal(error.details![0]!.field, `outer.0.${name}`);
      }),
    );
  });
});

describe('request body over HTTP', () => {
  let t: TestApp;
  let clinician: string;
  let auditor: string;

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    clinician = await t.token('clinician', 'alice');
    auditor = await t.token('auditor', 'alice');
  });
  after(() => t.close());

  const issue = (payload: string | Buffer, headers: Record<string, string> = {}) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: { ...bearer(clinician), 'content-type': 'application/json', ...headers },
      payload,
    });

  const storedCount = async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(auditor),
      payload: { limit: 500 },
    });
    return response.json().items.length as number;
  };

  test('duplicate note_text is rejected and nothing stored', async () => {
    const before = await storedCount();
    const text = JSON.stringify(issueBody({ note_text: 'first' }));
    const response = await issue(`${text.slice(0, -1)},"note_text":"second"}`);
    assert.equal(response.statusCode, 400);
    const { error } = response.json();
    assert.equal(error.code, 'VALIDATION_FAILED');
    assert.match(error.message, /^body field "note_text" appears more than once/);
    assert.equal(error.details[0].field, 'note_text');
    assert.equal(await storedCount(), before);
  });

  test('duplicate empty key is quoted', async () => {
    const response = await issue('{"note_text":"x","":1,"":2}');
    assert.equal(response.statusCode, 400);
    const { error } = response.json();
    assert.equal(error.code, 'VALIDATION_FAILED');
    assert.equal(
      error.message,
      'body field "" appears more than once in its object; send each key once',
    );
    assert.equal(error.details[0].field, '');
  });

  test('duplicate note_text in verify is rejected', async () => {
    const issued = await issue(JSON.stringify(issueBody({ note_text: 'hello' })));
    assert.equal(issued.statusCode, 201);
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${issued.json().certificate.certificate_id}/verify`,
      headers: { ...bearer(auditor), 'content-type': 'application/json' },
      payload: '{"note_text":"wrong","note_text":"hello"}',
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'note_text');
  });

  test('__proto__ key is named as not allowed', async () => {
    const response = await issue('{"__proto__":{"x":1}}');
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.code, 'VALIDATION_FAILED');
    assert.equal(
      response.json().error.message,
      'body field "__proto__" is not allowed, because it could change object prototypes',
    );
  });

  test('gzip content encoding gets 415', async () => {
    const response = await issue(gzipSync(JSON.stringify(issueBody())), {
      'content-encoding': 'gzip',
    });
    assert.equal(response.statusCode, 415);
    assert.equal(response.json().error.code, 'UNSUPPORTED_MEDIA_TYPE');
    assert.match(response.json().error.message, /^content encodings are not supported/);
    const identity = await issue(JSON.stringify(issueBody({ note_text: 'identity' })), {
      'content-encoding': 'Identity',
    });
    assert.equal(identity.statusCode, 201);
  });

  test('charset other than UTF-8 gets 415', async () => {
    for (const charset of ['iso-8859-1', 'utf-16', '"latin1"', '']) {
      const response = await issue(JSON.stringify(issueBody()), {
        'content-type': `application/json; charset=${charset}`,
      });
      assert.equal(response.statusCode, 415);
      assert.equal(response.json().error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(response.json().error.message, /^charset .* is not supported/);
    }
    for (const charset of ['utf-8', 'UTF-8', '"Utf-8"']) {
      const response = await issue(JSON.stringify(issueBody({ note_text: `cs ${charset}` })), {
        'content-type': `application/json; charset=${charset}`,
      });
      assert.equal(response.statusCode, 201, charset);
    }
  });
});
